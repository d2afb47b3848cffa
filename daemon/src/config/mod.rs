//! pacmeshd's configuration in two stages: [`RawConfig`] mirrors the TOML
//! file and the flags exactly; [`RawConfig::validate`] turns it into the
//! checked [`Config`] the daemon uses, naming key and file on any error.

pub mod mirror;
mod raw;
mod validate;

pub use mirror::{MirrorConfig, MirrorRepo};
pub use raw::RawConfig;
pub use validate::{Config, ConfigError, Mode, Origin};

use std::path::{Path, PathBuf};

/// The config file read when `--config` is not given; its absence is fine.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/pacmesh/pacmeshd.toml";

/// Reads the flags' config file (if any) and merges flags over it.
pub fn load(flags: RawConfig) -> Result<Config, ConfigError> {
    let (path, explicit) = match &flags.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let file = read_file(&path, explicit)?;
    flags.merge_over(file, &path).validate()
}

fn read_file(path: &Path, explicit: bool) -> Result<Option<RawConfig>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests;
