//! Running commands as the unprivileged test user, to prove rootless claims.

use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;

use nix::unistd::User;
use tempfile::TempDir;

use crate::require::{is_root, skip_or_fail};

/// The user tests/run creates for rootless tests.
pub const TEST_USER: &str = "kiln-test";

/// The unprivileged test user.
#[derive(Debug, Clone)]
pub struct AsUser {
    user: User,
}

impl AsUser {
    /// The test user, or `None` (a skip; a failure under CI) when it does not
    /// exist or this process cannot switch to it.
    pub fn get() -> Option<AsUser> {
        let found = User::from_name(TEST_USER).expect("read the user database");
        match found {
            Some(user) if is_root() => Some(AsUser { user }),
            Some(_) => {
                skip_or_fail("switching to the test user needs root");
                None
            }
            None => {
                skip_or_fail(&format!("no user {TEST_USER} (tests/run creates it)"));
                None
            }
        }
    }

    /// The user's numeric id.
    pub fn uid(&self) -> u32 {
        self.user.uid.as_raw()
    }

    /// The user's numeric group id.
    pub fn gid(&self) -> u32 {
        self.user.gid.as_raw()
    }

    /// `program` to be run as the test user with a clean login-like
    /// environment (HOME, USER, PATH). `setpriv` is named by its full path,
    /// so a test may give the command a PATH that lacks it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("/usr/bin/setpriv");
        command
            .arg(format!("--reuid={}", self.uid()))
            .arg(format!("--regid={}", self.gid()))
            .arg("--init-groups")
            .arg("--")
            .arg(program)
            .env_clear()
            .env("HOME", &self.user.dir)
            .env("USER", &self.user.name)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin");
        command
    }

    /// A temporary folder the test user owns.
    pub fn tempdir(&self) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix("kiln-user-")
            .tempdir()
            .expect("user temp dir");
        self.give(dir.path());
        dir
    }

    /// Makes `path` owned by the test user.
    pub fn give(&self, path: &Path) {
        chown(path, Some(self.uid()), Some(self.gid()))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}
