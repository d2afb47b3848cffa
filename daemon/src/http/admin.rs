//! `POST /_pacmesh/admin/{refresh,purge}`: a caching mirror's admin
//! actions, behind the token (`crate::admin`; docs/DESIGN.md, "Admin
//! actions"). Answers are JSON: what the action did.

use http::{header, HeaderMap, Method, Response, StatusCode};

use super::{text, Body};
use crate::admin::{authorize, Action, Refusal};
use crate::stats::Source;
use crate::State;

/// The answer to an admin request for `action`.
pub async fn respond(
    state: &State,
    method: &Method,
    headers: &HeaderMap,
    action: &str,
) -> (Response<Body>, Source) {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let post = method == Method::POST;
    let token = state.admin_token.as_ref();
    let action = match authorize(token, action, post, authorization) {
        Ok(action) => action,
        Err(refusal) => return refused(refusal),
    };
    let Some(proxy) = &state.dbproxy else {
        return refused(Refusal::Off);
    };
    tracing::info!(target: "pacmesh::request", ?action, "admin action");
    let body = match action {
        Action::Refresh => {
            let mirrors = state.mirrors();
            let done = proxy
                .refresh_all(|k| {
                    (state.mirror_client).order(mirrors.file_urls(&k.repo, &k.arch, &k.name))
                })
                .await;
            // Full mirrors are synced by the refresh loop, asked to run
            // now; the answer does not wait for it (status shows the run).
            let mut answer = serde_json::to_value(&done).unwrap_or_default();
            answer["full_sync_started"] = state.full_sync.run_now().into();
            serde_json::to_vec_pretty(&answer)
        }
        Action::Purge => {
            let fed = proxy.fed().clone();
            match state
                .engine
                .store()
                .removed_where(move |name| !fed.lists(name))
                .await
            {
                Ok(removed) => {
                    tracing::info!(target: "pacmesh::request", files = removed.len(), "kept packages no database lists removed");
                    serde_json::to_vec_pretty(&serde_json::json!({ "removed": removed }))
                }
                Err(e) => {
                    let response = Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR);
                    return (text(response, format!("{e}\n")), Source::Status);
                }
            }
        }
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store");
    (
        text_bytes(response, body.unwrap_or_default()),
        Source::Status,
    )
}

fn refused(refusal: Refusal) -> (Response<Body>, Source) {
    let (status, why) = match refusal {
        Refusal::Off => (StatusCode::NOT_FOUND, "admin actions are off"),
        Refusal::UnknownAction => (StatusCode::NOT_FOUND, "no such admin action"),
        Refusal::NotPost => (StatusCode::METHOD_NOT_ALLOWED, "admin actions are POSTs"),
        Refusal::NoToken => (StatusCode::UNAUTHORIZED, "an admin token is needed"),
        Refusal::WrongToken => (StatusCode::FORBIDDEN, "wrong admin token"),
    };
    tracing::warn!(target: "pacmesh::request", status = status.as_u16(), why, "admin request refused");
    let mut response = Response::builder().status(status);
    match refusal {
        Refusal::NoToken => response = response.header(header::WWW_AUTHENTICATE, "Bearer"),
        Refusal::NotPost => response = response.header(header::ALLOW, "POST"),
        _ => {}
    }
    let source = if status == StatusCode::NOT_FOUND {
        Source::NotFound
    } else {
        Source::BadRequest
    };
    (text(response, format!("{why}\n")), source)
}

fn text_bytes(builder: http::response::Builder, body: Vec<u8>) -> Response<Body> {
    builder
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::bytes(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
