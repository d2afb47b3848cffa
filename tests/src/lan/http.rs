//! HTTP inside a namespace, through `pacmesh-netprobe get|post` run there (the test process
//! stays in the root namespace).

use std::process::{Command, Stdio};

use super::netprobe_path;
use crate::http::Response;

/// `GET url` from inside the namespace `netns` through `pacmesh-netprobe get` (see
/// [`Host::http_get`]); for code that keeps a namespace's name rather than its [`Host`].
pub fn http_get_in(netns: &str, url: &str) -> anyhow::Result<Response> {
    http_get_in_with(netns, url, &[])
}

/// [`http_get_in`] with extra request headers.
pub fn http_get_in_with(
    netns: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    http_in(netns, "get", url, headers)
}

/// `pacmesh-netprobe get|post URL HEADER…` inside `netns`.
pub(super) fn http_in(
    netns: &str,
    mode: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Response> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(netprobe_path())
        .args([mode, url])
        .args(headers.iter().map(|(k, v)| format!("{k}: {v}")))
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} {url} in {netns}: {}",
        mode.to_uppercase(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    parse_response(&out.stdout)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of headers: {}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-type: a/b\r\n\r\n{\"x\":1}").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("a/b"));
        assert_eq!(r.text(), "{\"x\":1}");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
