//! Secret providers (env, age file, Vault, AWS), validation, rotation and audit.
//!
//! This crate is being built under its own issue; it has no public items yet.
