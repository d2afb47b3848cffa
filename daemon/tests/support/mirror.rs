//! A test mirror: a real hyper server on loopback serving one file, with
//! the misbehaviours a client must cope with. Plain TCP, or TLS.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

pub fn content() -> Vec<u8> {
    (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn reply(status: StatusCode) -> http::response::Builder {
    Response::builder().status(status)
}

/// `/file` honours `Range: bytes=N-`; `/whole` ignores it; `/wrong` answers
/// every range from byte 0; `/hop` and `/hop-abs` redirect to `/file`;
/// `/loop` redirects to itself; anything else is 404.
pub async fn mirror(req: Request<Incoming>, me: SocketAddr) -> Response<Full<Bytes>> {
    let body = content();
    let from = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| {
            r.strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse::<usize>()
                .ok()
        });
    let ranged = |start: usize| {
        reply(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
            )
            .body(Full::new(Bytes::copy_from_slice(&body[start..])))
    };
    let response = match (req.uri().path(), from) {
        ("/file", Some(start)) => ranged(start),
        ("/file" | "/whole", _) => reply(StatusCode::OK).body(Full::new(Bytes::from(body))),
        ("/wrong", _) => ranged(0),
        ("/hop", _) => reply(StatusCode::FOUND)
            .header(header::LOCATION, "/file")
            .body(Full::default()),
        ("/hop-abs", _) => reply(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, format!("http://{me}/file"))
            .body(Full::default()),
        ("/loop", _) => reply(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, "/loop")
            .body(Full::default()),
        _ => reply(StatusCode::NOT_FOUND).body(Full::default()),
    };
    response.expect("a well-formed response")
}

/// Serves [`mirror`] on 127.0.0.1, over TLS when `tls` is given.
pub async fn start_mirror_with(tls: Option<tokio_rustls::TlsAcceptor>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let me = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, me).await;
                        }
                    }
                    None => serve(stream, me).await,
                }
            });
        }
    });
    me
}

pub async fn start_mirror() -> SocketAddr {
    start_mirror_with(None).await
}

async fn serve(stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static, me: SocketAddr) {
    let service = service_fn(move |req| async move { Ok::<_, Infallible>(mirror(req, me).await) });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
