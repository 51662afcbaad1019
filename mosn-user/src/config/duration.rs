//! Go's `time.ParseDuration` syntax, which MOSN configs use ("30s", "1m30s", "1.5h", "500ms").
//!
//! Written here rather than taken from a crate: `humantime` reads "1m30s" but also accepts
//! units Go rejects ("1d", "1y", "1M") and refuses fractions ("1.5s") that Go accepts, so a
//! config valid in MOSN could be read differently. This follows Go exactly, except that
//! negative durations are refused (nothing in the config can use one).

use std::time::Duration;

/// Largest duration Go can represent (`math.MaxInt64` nanoseconds, about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration string: a sequence of decimal numbers, each with an optional fraction
/// and a unit suffix (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`), such as "300ms" or "2h45m".
/// "0" alone is allowed without a unit. On error, returns the reason (without the input).
pub fn parse_go_duration(input: &str) -> Result<Duration, String> {
    let mut s = input;
    if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    } else if s.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration (write e.g. \"30s\")".into());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_str, rest) = s.split_at(int_len);
        s = rest;
        let mut frac_str = "";
        if let Some(rest) = s.strip_prefix('.') {
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            frac_str = &rest[..n];
            s = &rest[n..];
        }
        if int_str.is_empty() && frac_str.is_empty() {
            return Err("expected a number".into());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err("missing unit (use ns, us, ms, s, m or h)".into()),
            other => {
                return Err(format!(
                    "unknown unit \"{other}\" (use ns, us, ms, s, m or h)"
                ));
            }
        };
        let out_of_range = || "duration out of range".to_string();
        let int: u128 = if int_str.is_empty() {
            0
        } else if int_str.len() > 20 {
            return Err(out_of_range());
        } else {
            int_str.parse().map_err(|_| out_of_range())?
        };
        let mut value = int.checked_mul(scale).ok_or_else(out_of_range)?;
        if !frac_str.is_empty() {
            // Digits past nanosecond precision of the largest unit cannot matter.
            let digits = &frac_str[..frac_str.len().min(20)];
            let frac: u128 = digits.parse().map_err(|_| out_of_range())?;
            value += frac * scale / 10u128.pow(digits.len() as u32);
        }
        total = total.checked_add(value).ok_or_else(out_of_range)?;
        if total > MAX_NANOS {
            return Err(out_of_range());
        }
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as p;
    use std::time::Duration;

    #[test]
    fn accepts_go_syntax() {
        assert_eq!(p("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(p("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(p("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(p("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(p("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(p(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(p("1h2m3s4ms5us6ns"), Ok(Duration::new(3723, 4_005_006)));
        assert_eq!(p("3µs"), Ok(Duration::from_micros(3)));
        assert_eq!(p("3μs"), Ok(Duration::from_micros(3)));
        assert_eq!(p("0"), Ok(Duration::ZERO));
        assert_eq!(p("0s"), Ok(Duration::ZERO));
        assert_eq!(p("+1s"), Ok(Duration::from_secs(1)));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "",
            "1",
            "s",
            ".s",
            "1x",
            "1d",
            "1.s.",
            "-1s",
            "1 s",
            "9999999999999h",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(p("1d").unwrap_err().contains("unknown unit \"d\""));
        assert!(p("10").unwrap_err().contains("missing unit"));
    }
}
