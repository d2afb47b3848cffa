//! Databases in caching-mirror mode (`crate::dbproxy`, docs/DESIGN.md,
//! "Proxied databases"): the kept copy (200, 304 to `If-Modified-Since`,
//! HEAD) with a `Warning` header when it is stale, 404 for a signature the
//! upstream does not have, a come-back while a first copy is fetched, and
//! 502 when no database can be had.

use http::{header, HeaderMap, Method, Response, StatusCode, Uri};

use super::local::{self, FileAsk};
use super::reply::Reply;
use super::{redirect, text};
use crate::dbproxy::{DbAnswer, DbKey};
use crate::fetch::wait::{hop_of, HOP_PARAM};
use crate::http::target::FileTarget;
use crate::stats::Source;
use crate::State;

/// The answer to a request for a database or its signature.
pub async fn respond(
    state: &State,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    file: &FileTarget,
) -> (Reply, Source) {
    let (Some(proxy), Some(repo), Some(arch)) = (&state.dbproxy, &file.repo, &file.arch) else {
        return fail(StatusCode::NOT_FOUND, "not a caching mirror's database");
    };
    let (name, sig) = match file.name.strip_suffix(".sig") {
        Some(db) => (db, true),
        None => (file.name.as_str(), false),
    };
    let key = DbKey {
        arch: arch.clone(),
        repo: repo.clone(),
        name: name.to_owned(),
    };
    let urls = (state.mirror_client).order(state.mirrors().file_urls(repo, arch, name));
    let hop = hop_of(uri.query());
    match proxy.answer(&key, sig, &urls, hop).await {
        DbAnswer::File {
            file,
            meta,
            warning,
        } => {
            let ask = FileAsk::from_request(method, headers);
            match local::serve_open(file, &meta, ask, Box::new(|_, _, _| {})) {
                Ok(mut reply) => {
                    reply.head.warning = warning;
                    (reply.into(), Source::Database)
                }
                Err(_) => fail(StatusCode::BAD_GATEWAY, "the kept database is unreadable"),
            }
        }
        DbAnswer::NoSignature => fail(
            StatusCode::NOT_FOUND,
            "the upstream has no signature for this database",
        ),
        DbAnswer::ComeBack => {
            let again = format!("{}?{HOP_PARAM}={}", uri.path(), hop + 1);
            let response = redirect(&again).header(header::CACHE_CONTROL, "no-store");
            (text(response, "").into(), Source::Database)
        }
        DbAnswer::Fail(why) => fail(StatusCode::BAD_GATEWAY, why),
    }
}

fn fail(status: StatusCode, why: &str) -> (Reply, Source) {
    let response = Response::builder().status(status);
    let source = if status == StatusCode::NOT_FOUND {
        Source::NotFound
    } else {
        Source::Database
    };
    (text(response, format!("{why}\n")).into(), source)
}
