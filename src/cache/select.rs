//! Which entries a prune removes: pure, so every rule is tested alone.
//!
//! - Leftovers of interrupted runs go, whatever their age.
//! - An entry held by a running kiln stays, and so does everything it
//!   needs (its closure, its blob).
//! - An entry stays while an entry that stays needs it. So an entry counts
//!   as used as recently as the most recent user of anything that needs it,
//!   and the least recently used go first: a layer's blob never goes before
//!   its index entry, a library never before the programs that link it.
//! - `older_than` removes every entry not used since; `max_size` then
//!   removes the least recently used until the rest fits.

use std::time::SystemTime;

/// What selection knows of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Bytes it takes.
    pub bytes: u64,
    /// When it was last used.
    pub last_used: SystemTime,
    /// Indices of the candidates it needs.
    pub needs: Vec<usize>,
    /// A running kiln holds it.
    pub held: bool,
    /// What an interrupted run left.
    pub leftover: bool,
}

/// What to prune down to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Remove entries last used at or before this time.
    pub unused_since: Option<SystemTime>,
    /// Remove the least recently used until this many bytes remain.
    pub max_size: Option<u64>,
}

/// The indices of the candidates to remove, in the order to remove them:
/// leftovers, then the least recently used first, users before what they
/// need.
pub fn select(candidates: &[Candidate], limits: &Limits) -> Vec<usize> {
    let kept_for = protected(candidates);
    let used = effective_use(candidates);
    let users = users(candidates);
    let mut removed = vec![false; candidates.len()];
    let mut order = Vec::new();
    let mut remove = |index: usize, removed: &mut Vec<bool>| {
        removed[index] = true;
        order.push(index);
    };
    for (index, candidate) in candidates.iter().enumerate() {
        if candidate.leftover && !candidate.held {
            remove(index, &mut removed);
        }
    }
    let mut by_age: Vec<usize> = (0..candidates.len())
        .filter(|&i| !removed[i] && !kept_for[i])
        .collect();
    // Oldest first; among equals, an entry before the entries it needs.
    by_age.sort_by_key(|&i| (used[i], users[i].len()));
    if let Some(cutoff) = limits.unused_since {
        for &index in &by_age {
            if used[index] <= cutoff {
                remove(index, &mut removed);
            }
        }
    }
    let Some(max_size) = limits.max_size else {
        return order;
    };
    let mut total: u64 = (0..candidates.len())
        .filter(|&i| !removed[i])
        .map(|i| candidates[i].bytes)
        .sum();
    // A pass may skip an entry whose last user it removes later on; passes
    // repeat until the rest fits or a whole pass removes nothing.
    let mut progress = true;
    while total > max_size && progress {
        progress = false;
        for &index in &by_age {
            if total <= max_size {
                break;
            }
            if removed[index] || users[index].iter().any(|&user| !removed[user]) {
                continue;
            }
            remove(index, &mut removed);
            total -= candidates[index].bytes;
            progress = true;
        }
    }
    order
}

/// Held entries and everything they need, transitively.
fn protected(candidates: &[Candidate]) -> Vec<bool> {
    let mut protected = vec![false; candidates.len()];
    let mut pending: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].held)
        .collect();
    while let Some(index) = pending.pop() {
        if std::mem::replace(&mut protected[index], true) {
            continue;
        }
        pending.extend(candidates[index].needs.iter().copied());
    }
    protected
}

/// Each entry's last use, raised to the latest use of any entry that
/// needs it, directly or not.
fn effective_use(candidates: &[Candidate]) -> Vec<SystemTime> {
    let mut used: Vec<SystemTime> = candidates.iter().map(|c| c.last_used).collect();
    // Relaxing edge by edge reaches a fixed point within one pass per level
    // of the graph; store path references are acyclic but for self-links.
    let mut changed = true;
    while changed {
        changed = false;
        for (index, candidate) in candidates.iter().enumerate() {
            for &need in &candidate.needs {
                if need != index && used[need] < used[index] {
                    used[need] = used[index];
                    changed = true;
                }
            }
        }
    }
    used
}

/// For each entry, the entries that need it.
fn users(candidates: &[Candidate]) -> Vec<Vec<usize>> {
    let mut users = vec![Vec::new(); candidates.len()];
    for (index, candidate) in candidates.iter().enumerate() {
        for &need in &candidate.needs {
            if need != index {
                users[need].push(index);
            }
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn entry(bytes: u64, used: u64) -> Candidate {
        Candidate {
            bytes,
            last_used: at(used),
            needs: Vec::new(),
            held: false,
            leftover: false,
        }
    }

    fn sorted(mut indices: Vec<usize>) -> Vec<usize> {
        indices.sort();
        indices
    }

    #[test]
    fn least_recently_used_go_first_until_the_rest_fits() {
        let entries = [entry(10, 3), entry(10, 1), entry(10, 2), entry(10, 4)];
        let limits = Limits {
            max_size: Some(20),
            ..Limits::default()
        };
        assert_eq!(select(&entries, &limits), [1, 2]);
        let limits = Limits {
            max_size: Some(25),
            ..Limits::default()
        };
        assert_eq!(select(&entries, &limits), [1, 2], "fits once under");
        let limits = Limits {
            max_size: Some(40),
            ..Limits::default()
        };
        assert!(select(&entries, &limits).is_empty());
        let limits = Limits {
            max_size: Some(0),
            ..Limits::default()
        };
        assert_eq!(select(&entries, &limits), [1, 2, 0, 3]);
    }

    #[test]
    fn an_old_need_of_a_recent_entry_stays() {
        // 0: a layer index entry used now; 1: its blob, older on disk.
        // 2: another, unused index entry and 3: its blob.
        let mut index = entry(1, 100);
        index.needs = vec![1];
        let blob = entry(50, 5);
        let mut old_index = entry(1, 50);
        old_index.needs = vec![3];
        let old_blob = entry(40, 50);
        let entries = [index, blob, old_index, old_blob];
        let limits = Limits {
            max_size: Some(60),
            ..Limits::default()
        };
        assert_eq!(select(&entries, &limits), [2, 3], "users before needs");
        let limits = Limits {
            unused_since: Some(at(60)),
            ..Limits::default()
        };
        assert_eq!(sorted(select(&entries, &limits)), [2, 3]);
        // Even asked for nothing to remain, removing the index entry frees
        // its blob within the same prune.
        let limits = Limits {
            max_size: Some(0),
            ..Limits::default()
        };
        assert_eq!(sorted(select(&entries, &limits)), [0, 1, 2, 3]);
    }

    #[test]
    fn held_entries_and_their_closures_stay() {
        // A store path held by a running build, its library, the loader the
        // library needs, and an unrelated path.
        let mut program = entry(10, 1);
        program.needs = vec![1];
        program.held = true;
        let mut library = entry(10, 1);
        library.needs = vec![2, 1];
        let loader = entry(10, 1);
        let other = entry(10, 1);
        let entries = [program, library, loader, other];
        let limits = Limits {
            unused_since: Some(at(10)),
            max_size: Some(0),
        };
        assert_eq!(select(&entries, &limits), [3]);
    }

    #[test]
    fn leftovers_go_whatever_their_age_unless_a_run_still_writes_them() {
        let mut leftover = entry(5, 1_000_000);
        leftover.leftover = true;
        let mut writing = leftover.clone();
        writing.held = true;
        let entries = [entry(5, 1), leftover, writing];
        assert_eq!(select(&entries, &Limits::default()), [1]);
        let limits = Limits {
            max_size: Some(10),
            ..Limits::default()
        };
        assert_eq!(select(&entries, &limits), [1], "the rest fits");
        let limits = Limits {
            max_size: Some(7),
            ..Limits::default()
        };
        assert_eq!(select(&entries, &limits), [1, 0], "what is held stays");
    }

    #[test]
    fn no_limits_remove_only_leftovers() {
        let entries = [entry(1 << 40, 0), entry(1, 0)];
        assert!(select(&entries, &Limits::default()).is_empty());
    }
}
