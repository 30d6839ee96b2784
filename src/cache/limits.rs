//! The limits a prune is given: a size (`--max-size 2G`,
//! `KILN_CACHE_MAX_SIZE`) and an age (`--older-than 7d`). Both come from
//! people and CI files, so anything but a plain whole number with a known
//! unit is refused, never guessed at.

use std::time::Duration;

/// Size units, powers of 1024 as `du -h` and Docker's `--keep-storage` use;
/// `K`, `KB` and `KiB` all mean 1024 bytes.
const SIZE_UNITS: [(&str, u32); 5] = [("", 0), ("K", 10), ("M", 20), ("G", 30), ("T", 40)];

/// Age units; a bare number is days, as earlier versions read it.
const AGE_UNITS: [(&str, u64); 6] = [
    ("", 86_400),
    ("s", 1),
    ("m", 60),
    ("h", 3_600),
    ("d", 86_400),
    ("w", 604_800),
];

/// A size or age that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Not a whole number followed by a known unit.
    #[error("{0:?} is not a size: write a whole number of bytes with an optional unit K, M, G or T (powers of 1024), e.g. 500M or 10G")]
    Size(String),
    /// Not a whole number followed by a known unit.
    #[error("{0:?} is not an age: write a whole number with an optional unit s, m, h, d or w (a bare number is days), e.g. 7d or 12h")]
    Age(String),
}

/// Bytes in `text`: `1048576`, `512K`, `500M`, `10GB`, `1GiB`, `2t`.
pub fn parse_size(text: &str) -> Result<u64, LimitError> {
    let bad = || LimitError::Size(text.to_string());
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let upper = unit.to_ascii_uppercase();
    let unit = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let shift = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, shift)| *shift)
        .ok_or_else(bad)?;
    number.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// The age in `text`: `30` (days), `0`, `90m`, `12h`, `7d`, `2w`.
pub fn parse_age(text: &str) -> Result<Duration, LimitError> {
    let bad = || LimitError::Age(text.to_string());
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let seconds = AGE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, seconds)| *seconds)
        .ok_or_else(bad)?;
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// The leading ASCII digits of `text` as a number, and the rest; `None`
/// when there are no digits or the number overflows.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number = text[..digits].parse().ok()?;
    Some((number, &text[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_binary_units() {
        let cases = [
            ("0", 0),
            ("1048576", 1 << 20),
            ("512K", 512 << 10),
            ("500M", 500 << 20),
            ("10G", 10 << 30),
            ("10GB", 10 << 30),
            ("1GiB", 1 << 30),
            ("2t", 2 << 40),
            ("7b", 7),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn hostile_sizes_are_refused() {
        for text in [
            "",
            "10XB",
            "-1",
            "+1",
            " 1G",
            "1G ",
            "1.5G",
            "G",
            "1e9",
            "0x10",
            "1GG",
            "1 G",
            "١٢",
            "18446744073709551616",
            "16777216T",
            "99999999999999999999999K",
        ] {
            let err = parse_size(text).unwrap_err();
            assert_eq!(err, LimitError::Size(text.to_string()), "{text}");
            assert!(err.to_string().contains("e.g. 500M"), "{err}");
        }
        // The largest size that fits.
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
    }

    #[test]
    fn ages_read_with_units_and_bare_days() {
        assert_eq!(parse_age("0"), Ok(Duration::ZERO));
        assert_eq!(parse_age("30"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(1_209_600)));
        for text in ["", "-1", "1y", "1D", "18446744073709551615d", "1.5h"] {
            assert_eq!(parse_age(text), Err(LimitError::Age(text.to_string())));
        }
    }
}
