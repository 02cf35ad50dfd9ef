//! Code shared by the gf-daemon integration tests (each test crate uses only part of it).
#![allow(dead_code)]

pub mod browser;
