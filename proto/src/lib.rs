//! pacmesh's shared domain types and, from the mesh issue on, the peer wire
//! protocol.
//!
//! Invariant: this crate never depends on tokio, quinn or hyper, so every
//! decision in it is a pure function testable with plain `#[test]`.

pub mod filename;

pub use filename::{classify, validate_name, FileKind, NameError, MAX_NAME_LEN};
