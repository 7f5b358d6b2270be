//! Each service reads one JSON config file (its shape is `contract::config`), written per host
//! by `cargo xtask deploy-services`.

use std::path::Path;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a valid config", path.display()))
}
