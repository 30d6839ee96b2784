//! Keeping the caller's command line and environment from the commands.
//!
//! The sandbox's init is a fork of kiln, so its memory holds kiln's
//! arguments and environment (registry credentials, say), and a command
//! could read them at `/proc/1/cmdline` and `/proc/1/environ`. Init zeroes
//! both areas and marks itself not dumpable, which also keeps commands from
//! ptrace and `/proc/1/mem`.

use std::ops::Range;

/// The address ranges of this process's arguments and environment, from
/// `/proc/self/stat` (fields 48 to 51). Read before `fork`; the child has
/// the same layout.
pub(super) fn caller_areas() -> Vec<Range<usize>> {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| parse_areas(&stat))
        .unwrap_or_default()
}

/// `arg_start..arg_end` and `env_start..env_end` from the text of a
/// `/proc/<pid>/stat` file. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_areas(stat: &str) -> Option<Vec<Range<usize>>> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (the state).
    let field = |number: usize| fields.get(number - 3)?.parse::<usize>().ok();
    let areas = vec![field(48)?..field(49)?, field(50)?..field(51)?];
    areas.iter().all(|a| a.start < a.end).then_some(areas)
}

/// Zeroes `areas` and makes this process not dumpable.
///
/// # Safety
/// `areas` must come from [`caller_areas`] of the process this one was
/// forked from, and nothing here may read the arguments or environment
/// afterwards.
pub(super) unsafe fn hide(areas: &[Range<usize>]) {
    for area in areas {
        // SAFETY: the kernel placed the argument and environment strings in
        // these ranges of the writable initial stack (as setproctitle uses).
        unsafe { std::ptr::write_bytes(area.start as *mut u8, 0, area.end - area.start) };
    }
    let _ = nix::sys::prctl::set_dumpable(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_with(name: &str) -> String {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "1000".into();
        fields[49 - 3] = "1100".into();
        fields[50 - 3] = "1100".into();
        fields[51 - 3] = "1300".into();
        format!("42 ({name}) {}", fields.join(" "))
    }

    #[test]
    fn areas_are_found_after_the_last_parenthesis() {
        for name in ["kiln", "a) (b", "x y) 1 2 3 ("] {
            assert_eq!(
                parse_areas(&stat_with(name)),
                Some(vec![1000..1100, 1100..1300]),
                "{name}"
            );
        }
    }

    #[test]
    fn hostile_stat_text_gives_nothing() {
        for stat in ["", "42 (kiln", "42 (kiln) R 1 2", "42 (kiln) R x y z"] {
            assert_eq!(parse_areas(stat), None, "{stat}");
        }
        let backwards = stat_with("kiln").replace(" 1000 1100 ", " 1100 1000 ");
        assert_eq!(parse_areas(&backwards), None);
    }

    #[test]
    fn this_process_has_both_areas() {
        let areas = caller_areas();
        assert_eq!(areas.len(), 2);
    }
}
