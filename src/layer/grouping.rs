//! Which store paths share a layer when the closure has more paths than
//! `--max-layers` allows, in the manner of nixpkgs' `streamLayeredImage`:
//! paths are ranked by popularity (how many paths of the closure depend on
//! them, themselves included), so glibc and the language runtime keep layers
//! of their own, and the least popular paths share the last layer.

use std::collections::HashMap;

use kiln_store::ClosurePath;

use super::StorePathSource;

/// Splits `closure` into at most `max_layers` groups (at least one), most
/// popular first. Each of the first groups holds one path; the last holds
/// every path that did not get a layer of its own, in name order. The same
/// closure in any order gives the same groups.
pub fn group_by_popularity(
    closure: &[ClosurePath],
    max_layers: usize,
) -> Vec<Vec<StorePathSource>> {
    let mut ranked = rank(closure);
    let max_layers = max_layers.max(1);
    if ranked.len() <= max_layers {
        return ranked
            .into_iter()
            .map(|path| vec![StorePathSource::from(path)])
            .collect();
    }
    let mut rest = ranked.split_off(max_layers - 1);
    rest.sort_by_key(|path| path.path.to_string());
    let mut groups: Vec<Vec<StorePathSource>> = ranked
        .into_iter()
        .map(|path| vec![StorePathSource::from(path)])
        .collect();
    groups.push(rest.into_iter().map(StorePathSource::from).collect());
    groups
}

fn rank(closure: &[ClosurePath]) -> Vec<&ClosurePath> {
    let names: Vec<String> = closure.iter().map(|path| path.path.to_string()).collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = closure
        .iter()
        .map(|path| {
            path.references
                .iter()
                .filter_map(|r| index.get(r.to_string().as_str()).copied())
                .collect()
        })
        .collect();
    let mut popularity = vec![0usize; closure.len()];
    for start in 0..closure.len() {
        for reached in reachable(&edges, start) {
            popularity[reached] += 1;
        }
    }
    let mut order: Vec<usize> = (0..closure.len()).collect();
    order.sort_by(|&a, &b| {
        popularity[b]
            .cmp(&popularity[a])
            .then(closure[b].nar_size.cmp(&closure[a].nar_size))
            .then(names[a].cmp(&names[b]))
    });
    order.into_iter().map(|i| &closure[i]).collect()
}

fn reachable(edges: &[Vec<usize>], start: usize) -> Vec<usize> {
    let mut seen = vec![false; edges.len()];
    let mut stack = vec![start];
    seen[start] = true;
    let mut found = Vec::new();
    while let Some(node) = stack.pop() {
        found.push(node);
        for &next in &edges[node] {
            if !seen[next] {
                seen[next] = true;
                stack.push(next);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str, size: u64, refs: &[&str]) -> ClosurePath {
        let full = |n: &str| {
            kiln_store::parse_store_path(&format!("/nix/store/{:0<32}-{n}", n.len())).unwrap()
        };
        let path = full(name);
        ClosurePath {
            location: path.to_string().into(),
            path,
            references: refs.iter().map(|r| full(r)).collect(),
            nar_size: size,
            nar_hash: format!("sha256:{:0>64}", size),
            file_size: None,
            origin: kiln_store::Origin::HostStore,
        }
    }

    fn names(groups: &[Vec<StorePathSource>]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|p| p.store_path.rsplit('-').next().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    fn closure() -> Vec<ClosurePath> {
        vec![
            path("app", 10, &["node", "glibc", "tzdata"]),
            path("node", 500, &["node", "glibc", "icu", "openssl"]),
            path("icu", 30, &["glibc"]),
            path("openssl", 5, &["glibc"]),
            path("glibc", 40, &[]),
            path("tzdata", 2, &[]),
        ]
    }

    #[test]
    fn shared_paths_keep_their_own_layers() {
        // Popularity: glibc 5, icu 3, openssl 3, node 2, tzdata 2, app 1;
        // ties go to the bigger path.
        let groups = group_by_popularity(&closure(), 5);
        assert_eq!(
            names(&groups),
            [
                vec!["glibc"],
                vec!["icu"],
                vec!["openssl"],
                vec!["node"],
                vec!["app", "tzdata"],
            ]
        );
    }

    #[test]
    fn under_the_cap_every_path_has_a_layer() {
        let groups = group_by_popularity(&closure(), 100);
        assert_eq!(groups.len(), 6);
        assert!(groups.iter().all(|g| g.len() == 1));
        assert_eq!(group_by_popularity(&closure(), 0).len(), 1);
    }

    #[test]
    fn input_order_does_not_matter() {
        let mut reversed = closure();
        reversed.reverse();
        for cap in 1..8 {
            assert_eq!(
                group_by_popularity(&closure(), cap),
                group_by_popularity(&reversed, cap)
            );
        }
    }
}
