//! Helpers shared by the end-to-end tests in `tests/tests/`.

use std::path::PathBuf;

/// The workspace root (where `fixtures/` lives).
#[must_use]
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A path under `fixtures/`.
#[must_use]
pub fn fixture(rel: &str) -> PathBuf {
    workspace_root().join("fixtures").join(rel)
}
