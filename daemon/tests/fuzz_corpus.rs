//! The daemon's fuzz corpora replayed through the fuzz targets' checks:
//! request heads, targets and ranges (fuzz/corpus/http) and sync database
//! files (fuzz/corpus/sync_db) are accepted or refused, never a panic.

use pacmesh_proto::fuzzing::replay;
use pacmeshd::fuzzing::{http_requests, sync_db};

#[test]
fn every_http_corpus_input_is_answered_or_refused_without_a_panic() {
    replay("http", http_requests);
}

#[test]
fn every_sync_db_corpus_input_is_read_or_refused_without_a_panic() {
    replay("sync_db", sync_db);
}
