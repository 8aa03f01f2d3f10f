//! Istio duration strings (`5s`, `1.5s`, `100ms`, `1h30m`) to [`std::time::Duration`].
//!
//! Istio reads YAML through gogo/protobuf's jsonpb, which parses a `google.protobuf.Duration`
//! with Go's `time.ParseDuration`; so the accepted syntax is Go's: one or more decimal numbers
//! (optionally fractional) each followed by a unit `ns`, `us`/`µs`, `ms`, `s`, `m` or `h`, or a
//! bare `0`. Negative durations parse in Go but no Istio field accepts them, so they are refused
//! here, at the syntax level.
//!
//! Parsing only: no clock.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to parse.
    #[error("empty duration")]
    Empty,
    /// A leading `-`.
    #[error("duration {0:?} is negative")]
    Negative(String),
    /// Not Go duration syntax.
    #[error("invalid duration {0:?}: expected a number and a unit like 5s, 1.5s, 100ms, 1h30m")]
    Syntax(String),
    /// A unit Go does not know.
    #[error("invalid duration {0:?}: unknown unit {1:?} (use ns, us, ms, s, m or h)")]
    Unit(String, String),
    /// More than `u64` nanoseconds.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parses a Go/Istio duration string.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let body = match s.as_bytes()[0] {
        b'-' => return Err(DurationError::Negative(text.to_owned())),
        b'+' => &s[1..],
        _ => s,
    };
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(DurationError::Syntax(text.to_owned()));
    }
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 || unit.is_empty()
        {
            return Err(DurationError::Syntax(text.to_owned()));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => return Err(DurationError::Unit(text.to_owned(), other.to_owned())),
        };
        total = total
            .checked_add(scaled(number, unit_nanos).ok_or_else(|| overflow(text))?)
            .ok_or_else(|| overflow(text))?;
    }
    let nanos = u64::try_from(total).map_err(|_| overflow(text))?;
    Ok(Duration::from_nanos(nanos))
}

fn overflow(text: &str) -> DurationError {
    DurationError::Overflow(text.to_owned())
}

/// `number` (digits with at most one `.`) times `unit_nanos`, truncated to whole nanoseconds
/// as Go does.
fn scaled(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos = nanos.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_syntax() {
        let ms = Duration::from_millis;
        assert_eq!(parse("5s"), Ok(ms(5_000)));
        assert_eq!(parse("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse("100ms"), Ok(ms(100)));
        assert_eq!(parse("1h"), Ok(ms(3_600_000)));
        assert_eq!(parse("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse("1m"), Ok(ms(60_000)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse(".5s"), Ok(ms(500)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn refuses_what_go_refuses() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(parse("5"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("1..5s"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("5 s"), Err(DurationError::Unit(_, _))));
        assert!(matches!(parse("5sec"), Err(DurationError::Unit(_, _))));
        assert!(matches!(parse("5d"), Err(DurationError::Unit(_, _))));
        assert!(matches!(parse("-1s"), Err(DurationError::Negative(_))));
        assert!(matches!(
            parse("99999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }
}
