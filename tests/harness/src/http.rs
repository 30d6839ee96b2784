//! Plain HTTP requests from tests, through curl (a real client, the same one
//! a user would try first).

use std::process::Command;

/// The body of `GET url` when it answers 2xx, else `None`.
pub fn get(url: &str) -> Option<String> {
    let output = Command::new("curl")
        .args(["--silent", "--fail", "--max-time", "5", url])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}
