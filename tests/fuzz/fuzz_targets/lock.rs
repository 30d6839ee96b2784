//! `kiln.lock` bytes, which come with the app: read as a lock or refused
//! with an error naming the file, never a panic.
#![no_main]

use std::path::Path;

use kiln::resolve::Lock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(err) = Lock::parse(data, Path::new("app/kiln.lock")) {
        assert!(err.to_string().contains("app/kiln.lock"), "{err}");
    }
});
