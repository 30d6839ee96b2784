//! Reading the `--json` summary `kiln build` prints.

use serde_json::Value;

/// The phases of a summary with whether each came from a cache, by name.
pub fn phases_cached(summary: &Value) -> Vec<(String, bool)> {
    summary["phases"]
        .as_array()
        .expect("the summary lists its phases")
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["cached"] == true))
        .collect()
}
