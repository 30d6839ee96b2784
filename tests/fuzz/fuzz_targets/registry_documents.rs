//! Bytes a registry sends as a manifest, an index or an image config, put
//! through the checks a pull makes: parsed, media types and schema checked,
//! the host's entry picked from an index, the config's diff IDs counted.
//! Each may refuse the bytes with a reason; none may panic.
#![no_main]

use kiln::registry::{check_manifest, parse_image_config, Platform};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = check_manifest(data, &Platform::host());
    let arm = Platform {
        os: "linux".to_string(),
        architecture: "arm64".to_string(),
        variant: Some("v8".to_string()),
    };
    let _ = check_manifest(data, &arm);
    let _ = parse_image_config(data, 1);
});
