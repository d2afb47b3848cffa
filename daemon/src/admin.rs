//! A caching mirror's admin actions (`POST /_pacmesh/admin/{refresh,purge}`,
//! docs/DESIGN.md, "Admin actions"): who may run them, and what they are.
//!
//! They are off unless `mirror.admin_token_file` names a token file, and
//! then refused without that token, from loopback as from the LAN. The
//! token lives in a file only its owner can read (never in an environment
//! file): a file readable or writable by group or others is refused at
//! start. It is compared in constant time (both sides HMAC'd, the tags
//! compared by ring).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use ring::hmac;

/// The shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// What is signed with the token and with a candidate, to compare them.
const TAG_MESSAGE: &[u8] = b"pacmesh admin token";

/// The admin token, as a tag: never printed, never kept in clear.
#[derive(Clone)]
pub struct AdminToken {
    tag: hmac::Tag,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken").finish_non_exhaustive()
    }
}

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminTokenError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} may be read or written by group or others (mode {mode:o}); chmod 600 it", path.display())]
    Open { path: PathBuf, mode: u32 },
    #[error("{} holds {len} bytes; a token is at least {MIN_TOKEN_LEN}", path.display())]
    TooShort { path: PathBuf, len: usize },
}

impl AdminToken {
    /// Reads the token file: its content less trailing line breaks.
    pub fn load(path: &Path) -> Result<AdminToken, AdminTokenError> {
        let read = |source| AdminTokenError::Read {
            path: path.to_owned(),
            source,
        };
        let mode = std::fs::metadata(path).map_err(read)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(AdminTokenError::Open {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        AdminToken::from_bytes(&bytes).ok_or_else(|| AdminTokenError::TooShort {
            path: path.to_owned(),
            len: trim(&bytes).len(),
        })
    }

    /// A token from a token file's content; `None` when too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<AdminToken> {
        let token = trim(bytes);
        (token.len() >= MIN_TOKEN_LEN).then(|| AdminToken { tag: tag_of(token) })
    }

    /// Whether `candidate` is the token (constant time).
    fn matches(&self, candidate: &[u8]) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, candidate);
        hmac::verify(&key, TAG_MESSAGE, self.tag.as_ref()).is_ok()
    }
}

fn tag_of(token: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, token), TAG_MESSAGE)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// An admin action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Ask the upstreams about every kept database now.
    Refresh,
    /// Remove the kept packages no proxied database lists any more.
    Purge,
}

impl Action {
    pub fn from_name(name: &str) -> Option<Action> {
        match name {
            "refresh" => Some(Action::Refresh),
            "purge" => Some(Action::Purge),
            _ => None,
        }
    }
}

/// Why a request may not run an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token configured (or not a caching mirror): 404.
    Off,
    /// An unknown action: 404.
    UnknownAction,
    /// Not a POST: 405.
    NotPost,
    /// No `Authorization: Bearer …`: 401.
    NoToken,
    /// The wrong token: 403.
    WrongToken,
}

/// Decides whether a request may run an admin action (pure): the token
/// configured, the action named, whether it is a POST, and its
/// `Authorization` header.
pub fn authorize(
    token: Option<&AdminToken>,
    action: &str,
    post: bool,
    authorization: Option<&str>,
) -> Result<Action, Refusal> {
    let token = token.ok_or(Refusal::Off)?;
    let action = Action::from_name(action).ok_or(Refusal::UnknownAction)?;
    if !post {
        return Err(Refusal::NotPost);
    }
    let given = authorization
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or(Refusal::NoToken)?;
    if token.matches(given.as_bytes()) {
        Ok(action)
    } else {
        Err(Refusal::WrongToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "correct horse battery staple";

    /// The token configured, the action, a POST, `Authorization`: the verdict.
    type Case<'a> = (
        Option<&'a AdminToken>,
        &'a str,
        bool,
        Option<&'a str>,
        Result<Action, Refusal>,
    );

    #[test]
    fn who_may_run_what() {
        let token = AdminToken::from_bytes(format!("{TOKEN}\n").as_bytes()).unwrap();
        let bearer = format!("Bearer {TOKEN}");
        let table: &[Case<'_>] = &[
            (
                Some(&token),
                "refresh",
                true,
                Some(&bearer),
                Ok(Action::Refresh),
            ),
            (
                Some(&token),
                "purge",
                true,
                Some(&bearer),
                Ok(Action::Purge),
            ),
            (
                Some(&token),
                "purge",
                true,
                Some(&format!("bearer  {TOKEN} ")),
                Ok(Action::Purge),
            ),
            (None, "refresh", true, Some(&bearer), Err(Refusal::Off)),
            (
                Some(&token),
                "reboot",
                true,
                Some(&bearer),
                Err(Refusal::UnknownAction),
            ),
            (
                Some(&token),
                "refresh",
                false,
                Some(&bearer),
                Err(Refusal::NotPost),
            ),
            (Some(&token), "refresh", true, None, Err(Refusal::NoToken)),
            (
                Some(&token),
                "refresh",
                true,
                Some(TOKEN),
                Err(Refusal::NoToken),
            ),
            (
                Some(&token),
                "refresh",
                true,
                Some(&format!("Basic {TOKEN}")),
                Err(Refusal::NoToken),
            ),
            (
                Some(&token),
                "refresh",
                true,
                Some("Bearer correct horse"),
                Err(Refusal::WrongToken),
            ),
            (
                Some(&token),
                "refresh",
                true,
                Some(&format!("Bearer {TOKEN}x")),
                Err(Refusal::WrongToken),
            ),
        ];
        for (token, action, post, header, want) in table {
            assert_eq!(
                authorize(*token, action, *post, *header),
                *want,
                "{action} post={post} {header:?}"
            );
        }
    }

    #[test]
    fn token_files_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AdminToken::load(&path),
            Err(AdminTokenError::Open { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(AdminToken::load(&path).is_ok());
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            AdminToken::load(&path),
            Err(AdminTokenError::TooShort { len: 5, .. })
        ));
        assert!(matches!(
            AdminToken::load(&dir.path().join("gone")),
            Err(AdminTokenError::Read { .. })
        ));
    }
}
