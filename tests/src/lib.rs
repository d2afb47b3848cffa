//! Harness for pacmesh whole-system tests: the real pacman, makepkg-built fixture repos, an nginx upstream mirror and the real `pacmeshd` binary, all on loopback (or, with [`lan`], on hosts in network namespaces) and all cleaned up on drop.
//!
//! A typical test:
//!
//! ```no_run
//! use pacmesh_tests::{fixtures::{FixtureRepo, PkgSpec}, pacman::PacmanRoot, prereq, upstream::Upstream};
//!
//! if !prereq::require(prereq::WHOLE_SYSTEM_TOOLS) {
//!     return;
//! }
//! let repo = FixtureRepo::get("pmtest", &[PkgSpec::new("hello", "1.0-1", 64 * 1024)]);
//! let mirror = Upstream::start(repo.root());
//! let pacman = PacmanRoot::new("pmtest", &[mirror.server_url()]);
//! pacman.run_ok(&["-Sy", "hello"]);
//! assert!(pacman.installed("hello"));
//! ```

pub mod caching;
pub mod daemon;
mod eventually;
pub mod files;
pub mod fixtures;
pub mod fleet;
pub mod http;
pub mod lan;
pub mod net;
pub mod pacman;
pub mod prereq;
pub mod process;
pub mod prometheus;
pub mod upstream;
pub mod workspace;
