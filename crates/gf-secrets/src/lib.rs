//! Secret providers (env, age file, Vault, AWS), validation, rotation and audit.

pub mod audit;
pub mod aws;
pub mod cli;
pub mod env;
pub mod error;
pub mod file;
pub mod http;
pub mod provider;
pub mod rotation;
pub mod secret;
pub mod sigv4;
pub mod vault;

pub use error::{Error, Result};
