//! Shared by the daemon's integration tests.

#![allow(dead_code)]

pub mod daemon;
pub mod data;
pub mod logs;
pub mod mirror;
pub mod node;
pub mod stall;
pub mod stranger;
pub mod wait;
