//! narinfo text as a binary cache sends it, parsed for the store path it
//! names (or a fixed one when it names none) and its signature checked
//! against a trusted key, as `kiln-store` does before fetching a NAR. Either
//! step may refuse the text; neither may panic.
#![no_main]

use kiln_store::{check_signature, parse_narinfo, parse_public_keys, parse_store_path};
use libfuzzer_sys::fuzz_target;

/// The key the signed seed in `seeds/narinfo` verifies with.
const TRUSTED_KEY: &str = "kiln-fixture-1:FAOksX/VKfoX+SxNbwXaUfFxsrtHNAIYEguDLQRHhGE=";
const FALLBACK_PATH: &str = "/nix/store/4v988mi97ywfizjf49034d3fkj8cbjxb-bash-5.2";
const URL: &str = "file:///cache/4v988mi97ywfizjf49034d3fkj8cbjxb.narinfo";

fuzz_target!(|data: &[u8]| {
    // The store path is the one kiln asked for; taking it from the text
    // lets the fuzzer reach the checks past the path comparison.
    let named = std::str::from_utf8(data)
        .ok()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("StorePath: ")))
        .and_then(|path| parse_store_path(path).ok());
    let expected = named.unwrap_or_else(|| parse_store_path(FALLBACK_PATH).expect("a store path"));
    let keys = parse_public_keys(&[TRUSTED_KEY.to_string()]).expect("a public key");
    if let Ok(info) = parse_narinfo(data, URL, &expected) {
        let _ = check_signature(&info, &keys, URL);
    }
});
