//! Byte sizes: "1MiB", "64 KiB", "512B" or a bare number of bytes.
//!
//! Only binary units: "1MB" is refused rather than guessed (decimal or binary?), with the
//! spelling that is accepted.

/// Parses a size string: an unsigned integer followed by an optional unit `B`, `KiB`, `MiB`
/// or `GiB` (case-insensitive, spaces allowed before the unit). On error, returns the reason.
pub fn parse_size(input: &str) -> Result<u64, String> {
    let s = input.trim();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected a number of bytes, optionally with a unit (B, KiB, MiB, GiB)".into());
    }
    let (num, unit) = s.split_at(digits);
    let unit = unit.trim_start();
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => {
            return Err(format!("unknown unit \"{unit}\" (use B, KiB, MiB or GiB)"));
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| "size out of range".to_string())
}

/// Shows a byte count with the largest binary unit that divides it ("1MiB", "65537B").
pub fn show_size(n: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n >= scale && n.is_multiple_of(scale) {
            return format!("{}{unit}", n / scale);
        }
    }
    format!("{n}B")
}

/// A [`RawSize`](super::raw::RawSize) as a byte count, or the reason it is not one.
pub fn parse_raw_size(raw: &super::raw::RawSize) -> Result<u64, String> {
    match raw {
        super::raw::RawSize::Text(s) => {
            parse_size(s).map_err(|r| format!("invalid size {s:?}: {r}"))
        }
        super::raw::RawSize::Bytes(n) => Ok(*n),
        super::raw::RawSize::Invalid(reason) => Err(format!("invalid size: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(
            parse_size("1MB")
                .unwrap_err()
                .contains("unknown unit \"MB\"")
        );
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(
            parse_size("99999999999999GiB").unwrap_err(),
            "size out of range"
        );
        assert_eq!(show_size(1 << 20), "1MiB");
        assert_eq!(show_size(64 << 10), "64KiB");
        assert_eq!(show_size(65537), "65537B");
    }
}
