//! The elapsed time in the article's format, written without `core::fmt`.
//!
//! The article prints Go's `time.Duration`, and Rust's `Duration` `Debug` output matches it
//! (`5.0002721s`, `47.4µs`, `100ms`). `format!("{:?}")` is the obvious way to get it, but the
//! formatting machinery was the largest single cost of a warm `/ping` in a callgrind profile
//! (about 8% of the server's instructions per request), so the same digits are written here
//! by hand. A property test pins the output to `Debug`'s for any duration.
//!
//! Formatting only: no clock of its own.

use std::time::Duration;

/// Appends `elapsed` exactly as `format!("{elapsed:?}")` would.
pub fn push(out: &mut String, elapsed: Duration) {
    let secs = elapsed.as_secs();
    let nanos = elapsed.subsec_nanos();
    // (integer part, fractional part, value of the fraction's first digit, unit)
    let (integer, mut fraction, mut digit, unit) = if secs > 0 {
        (secs, nanos, 100_000_000, "s")
    } else if nanos >= 1_000_000 {
        (
            u64::from(nanos / 1_000_000),
            nanos % 1_000_000,
            100_000,
            "ms",
        )
    } else if nanos >= 1_000 {
        (u64::from(nanos / 1_000), nanos % 1_000, 100, "µs")
    } else {
        (u64::from(nanos), 0, 1, "ns")
    };
    push_u64(out, integer);
    if fraction > 0 {
        out.push('.');
        // Every significant digit, no trailing zeros: `Debug` without a precision.
        while fraction > 0 {
            out.push(char::from(b'0' + (fraction / digit) as u8));
            fraction %= digit;
            digit /= 10;
        }
    }
    out.push_str(unit);
}

fn push_u64(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn written(elapsed: Duration) -> String {
        let mut out = String::new();
        push(&mut out, elapsed);
        out
    }

    #[test]
    fn the_articles_figures() {
        assert_eq!(written(Duration::from_nanos(5_000_272_100)), "5.0002721s");
        assert_eq!(written(Duration::from_nanos(47_400)), "47.4µs");
        assert_eq!(written(Duration::from_millis(100)), "100ms");
        assert_eq!(written(Duration::ZERO), "0ns");
        assert_eq!(written(Duration::MAX), format!("{:?}", Duration::MAX));
    }

    proptest! {
        #[test]
        fn matches_debug(secs in prop_oneof![Just(0u64), 0u64..10, any::<u64>()],
                         nanos in prop_oneof![0u32..1_000, 0u32..1_000_000, 0u32..1_000_000_000]) {
            let elapsed = Duration::new(secs, nanos);
            prop_assert_eq!(written(elapsed), format!("{elapsed:?}"));
        }
    }
}
