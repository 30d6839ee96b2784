//! The byte mutations kiln's bounded fuzz targets (proptest, stable Rust)
//! share across crates: inputs mutated from a valid seed, so most cases stay
//! close enough to valid to reach deep into a parser rather than failing on
//! the first byte.

use proptest::prelude::*;

/// One change to a seed's bytes; positions wrap around the seed's length.
#[derive(Debug, Clone)]
enum Edit {
    Overwrite(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Overwrite(at, byte)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert(at, bytes)),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Edit::Delete(at, len)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// `seed` with one to four bytes-level edits applied.
pub fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(edit(), 1..5).prop_map(move |edits| {
        let mut bytes = seed.clone();
        for edit in edits {
            let at = |i: usize, bytes: &Vec<u8>| i % (bytes.len() + 1);
            match edit {
                Edit::Overwrite(i, byte) => {
                    if !bytes.is_empty() {
                        let i = i % bytes.len();
                        bytes[i] = byte;
                    }
                }
                Edit::Insert(i, new) => {
                    let i = at(i, &bytes);
                    bytes.splice(i..i, new);
                }
                Edit::Delete(i, len) => {
                    let i = at(i, &bytes);
                    let end = (i + len).min(bytes.len());
                    bytes.drain(i..end);
                }
                Edit::Truncate(i) => {
                    let i = at(i, &bytes);
                    bytes.truncate(i);
                }
            }
        }
        bytes
    })
}
