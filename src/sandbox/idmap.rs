//! Which host ids the sandbox's ids map to, and writing those maps.
//!
//! uid and gid 0 inside are always the caller. A caller with a range in
//! `/etc/subuid` and `/etc/subgid` gets ids 1.. mapped onto it through the
//! setuid helpers `newuidmap`/`newgidmap` (so builds can create files owned
//! by other users, as rootless podman does); root maps ids onto themselves;
//! anyone else gets the single mapping the kernel allows without help.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{getgid, getuid, Pid, User};

use super::SandboxError;

/// How many ids root maps onto themselves.
const ROOT_RANGE: u32 = 65536;

/// A range of subordinate ids from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SubordinateRange {
    pub(super) start: u32,
    pub(super) count: u32,
}

/// The maps for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IdMaps {
    /// Written straight to `/proc/<pid>/{uid,gid}_map`.
    Direct {
        uid_map: String,
        gid_map: String,
        deny_setgroups: bool,
    },
    /// Written by the setuid helpers.
    Helpers {
        newuidmap: PathBuf,
        newgidmap: PathBuf,
        uid: u32,
        gid: u32,
        uids: SubordinateRange,
        gids: SubordinateRange,
    },
}

impl IdMaps {
    /// The maps for the calling user.
    pub(super) fn for_caller() -> IdMaps {
        let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
        if uid == 0 {
            let identity = format!("0 0 {ROOT_RANGE}\n");
            return IdMaps::Direct {
                uid_map: identity.clone(),
                gid_map: identity,
                deny_setgroups: false,
            };
        }
        let name = User::from_uid(getuid())
            .ok()
            .flatten()
            .map(|user| user.name)
            .unwrap_or_default();
        let ranges = (
            read_range(Path::new("/etc/subuid"), &name, uid),
            read_range(Path::new("/etc/subgid"), &name, gid),
            find_helper("newuidmap"),
            find_helper("newgidmap"),
        );
        match ranges {
            (Some(uids), Some(gids), Some(newuidmap), Some(newgidmap)) => IdMaps::Helpers {
                newuidmap,
                newgidmap,
                uid,
                gid,
                uids,
                gids,
            },
            _ => IdMaps::Direct {
                uid_map: format!("0 {uid} 1\n"),
                gid_map: format!("0 {gid} 1\n"),
                deny_setgroups: true,
            },
        }
    }

    /// Writes the maps of the user namespace process `pid` has entered.
    pub(super) fn apply(&self, pid: Pid) -> Result<(), SandboxError> {
        match self {
            IdMaps::Direct {
                uid_map,
                gid_map,
                deny_setgroups,
            } => {
                let proc_dir = PathBuf::from(format!("/proc/{pid}"));
                let write = |name: &str, content: &str| {
                    fs::write(proc_dir.join(name), content).map_err(|source| SandboxError::IdMap {
                        detail: format!("writing {content:?} to /proc/{pid}/{name}: {source}"),
                    })
                };
                if *deny_setgroups {
                    write("setgroups", "deny")?;
                }
                write("uid_map", uid_map)?;
                write("gid_map", gid_map)
            }
            IdMaps::Helpers {
                newuidmap,
                newgidmap,
                uid,
                gid,
                uids,
                gids,
            } => {
                run_helper(newuidmap, pid, *uid, *uids)?;
                run_helper(newgidmap, pid, *gid, *gids)
            }
        }
    }
}

fn run_helper(
    helper: &Path,
    pid: Pid,
    own: u32,
    range: SubordinateRange,
) -> Result<(), SandboxError> {
    let output = Command::new(helper)
        .arg(pid.to_string())
        .args(["0", &own.to_string(), "1"])
        .args(["1", &range.start.to_string(), &range.count.to_string()])
        .output()
        .map_err(|source| SandboxError::IdMap {
            detail: format!("could not run {}: {source}", helper.display()),
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(SandboxError::IdMap {
        detail: format!(
            "{} failed ({}): {}",
            helper.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

fn find_helper(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

fn read_range(file: &Path, name: &str, id: u32) -> Option<SubordinateRange> {
    parse_range(&fs::read_to_string(file).ok()?, name, id)
}

/// The first range for the user, named or numeric, in a subuid/subgid file.
/// Lines that are not `owner:start:count` with numbers that fit are skipped,
/// as `newuidmap` skips them.
pub(super) fn parse_range(content: &str, name: &str, id: u32) -> Option<SubordinateRange> {
    let id = id.to_string();
    content.lines().find_map(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next()?;
        let start = fields.next()?.parse::<u32>().ok()?;
        let count = fields.next()?.parse::<u32>().ok()?;
        let belongs = (!name.is_empty() && owner == name) || owner == id;
        let fits = count > 0 && start.checked_add(count).is_some();
        (belongs && fits && fields.next().is_none()).then_some(SubordinateRange { start, count })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_range_by_name_or_uid() {
        let file = "alice:100000:65536\nbob:165536:65536\n";
        assert_eq!(
            parse_range(file, "bob", 1002),
            Some(SubordinateRange {
                start: 165536,
                count: 65536
            })
        );
        assert_eq!(
            parse_range("1001:200000:10\n", "carol", 1001),
            Some(SubordinateRange {
                start: 200000,
                count: 10
            })
        );
        assert_eq!(parse_range(file, "carol", 1003), None);
    }

    #[test]
    fn hostile_lines_are_skipped() {
        let file = "\
# comment
bob
bob:x:10
bob:10:-1
bob:4294967295:2
bob:5:0
bob:1:2:3
:1:2
bob:300000:5
";
        assert_eq!(
            parse_range(file, "bob", 7),
            Some(SubordinateRange {
                start: 300000,
                count: 5
            })
        );
        assert_eq!(parse_range(file, "", 7), None);
    }
}
