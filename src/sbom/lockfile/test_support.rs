//! Hostile input every lockfile parser must survive: it may refuse it, but
//! never panic, overflow its stack or hang.

use super::Parser;

/// Bytes that are no lockfile of any kind, or are one built to hurt: binary
/// garbage, invalid UTF-8, nesting thousands deep in JSON, YAML and TOML,
/// a megabyte-long line, YAML aliases that grow without end.
fn generic() -> Vec<Vec<u8>> {
    let mut garbage = Vec::new();
    let mut state = 0x2545_f491_u32;
    for _ in 0..4096 {
        // A fixed xorshift sequence, so a failure is reproducible.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        garbage.push(state as u8);
    }
    let deep = 100_000;
    vec![
        Vec::new(),
        garbage,
        b"\xff\xfe\x00\n\xc3".to_vec(),
        "[".repeat(deep).into_bytes(),
        "{\"a\":".repeat(deep).into_bytes(),
        "- ".repeat(deep).into_bytes(),
        (0..5000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect::<String>()
            .into_bytes(),
        format!("a = {}", "[".repeat(deep)).into_bytes(),
        format!("x = {{{}", "a = {".repeat(deep)).into_bytes(),
        "a".repeat(1 << 20).into_bytes(),
        b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n".to_vec(),
        "\n".repeat(1 << 16).into_bytes(),
    ]
}

/// Runs `parse` over the generic hostile inputs and `own` (inputs aimed at
/// its format); returns how many it refused. A panic fails the test.
pub fn survives(parse: Parser, own: &[&[u8]]) -> usize {
    let mut refused = 0;
    for input in generic().into_iter().chain(own.iter().map(|i| i.to_vec())) {
        if parse(&input).is_err() {
            refused += 1;
        }
    }
    refused
}

/// The purls `parse` reads from `lock`, which it must accept.
pub fn purls(parse: Parser, lock: &str) -> Vec<String> {
    parse(lock.as_bytes())
        .unwrap()
        .into_iter()
        .map(|p| p.purl)
        .collect()
}
