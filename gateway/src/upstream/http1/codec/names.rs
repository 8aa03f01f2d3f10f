//! Response field names, remembered per thread.
//!
//! `HeaderName::from_bytes` allocates a copy of every name that is not one of `http`'s
//! standard ones, and a replica sends the same few on every response (`x-served-by`,
//! `x-cache`...): three allocations and three frees per proxied request, ~800 instructions
//! of ~31 000 (callgrind). The last names seen on this thread are kept; a name seen before is
//! a clone (a reference count), compared byte for byte as it came, so `X-Cache` and `x-cache`
//! are two entries and nothing is ever matched case-insensitively by mistake.
//!
//! Bounded: [`KEPT`] names per thread, replaced in turn, so a replica sending made-up names
//! costs each of them what it cost before and the memory stays a few hundred bytes.

use std::cell::RefCell;

use http::HeaderName;
use http::header::InvalidHeaderName;

/// Names kept per thread.
const KEPT: usize = 16;

#[derive(Default)]
struct Names {
    names: Vec<HeaderName>,
    /// The slot the next new name replaces once all are taken.
    next: usize,
}

thread_local! {
    static NAMES: RefCell<Names> = RefCell::default();
}

/// The field name `bytes`, as `HeaderName::from_bytes` makes it.
pub fn header_name(bytes: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    NAMES.with(|names| {
        let Ok(mut names) = names.try_borrow_mut() else {
            return HeaderName::from_bytes(bytes);
        };
        if let Some(name) = names
            .names
            .iter()
            .find(|name| name.as_str().as_bytes() == bytes)
        {
            return Ok(name.clone());
        }
        let name = HeaderName::from_bytes(bytes)?;
        // Only a name that came lowercase can be found again by its bytes.
        if name.as_str().as_bytes() == bytes {
            if names.names.len() < KEPT {
                names.names.push(name.clone());
            } else {
                let slot = names.next;
                names.names[slot] = name.clone();
                names.next = (slot + 1) % KEPT;
            }
        }
        Ok(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_what_from_bytes_makes_whether_kept_or_not() {
        for bytes in [
            &b"x-served-by"[..],
            b"x-served-by",
            b"X-Served-By",
            b"content-length",
            b"Content-Length",
            b"x-cache",
        ] {
            assert_eq!(
                header_name(bytes).unwrap(),
                HeaderName::from_bytes(bytes).unwrap()
            );
        }
        assert!(header_name(b"bad name").is_err());
        assert!(header_name(b"").is_err());
    }

    #[test]
    fn the_names_kept_are_bounded_and_replaced_in_turn() {
        for i in 0..(3 * KEPT) {
            let bytes = format!("x-made-up-{i}");
            assert_eq!(header_name(bytes.as_bytes()).unwrap().as_str(), bytes);
        }
        NAMES.with(|names| {
            let names = names.borrow();
            assert_eq!(names.names.len(), KEPT);
            // The last KEPT names are the ones kept.
            let last = format!("x-made-up-{}", 3 * KEPT - 1);
            assert!(names.names.iter().any(|n| n.as_str() == last));
            assert!(!names.names.iter().any(|n| n.as_str() == "x-made-up-0"));
        });
        // A name seen again is found (and is still right).
        let again = format!("x-made-up-{}", 3 * KEPT - 2);
        assert_eq!(header_name(again.as_bytes()).unwrap().as_str(), again);
    }

    #[test]
    fn a_mixed_case_name_is_not_kept_under_its_lowercase_bytes() {
        let name = header_name(b"X-Odd-Case").unwrap();
        assert_eq!(name.as_str(), "x-odd-case");
        NAMES.with(|names| {
            assert!(
                !names
                    .borrow()
                    .names
                    .iter()
                    .any(|n| n.as_str() == "x-odd-case")
            );
        });
    }
}
