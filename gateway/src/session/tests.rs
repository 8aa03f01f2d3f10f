use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use proptest::prelude::*;

use super::*;

/// Fixed secrets, at least 32 bytes each: every value below is deterministic.
const A: &str = "session-key-A/0123456789abcdefghijklmnopqrstuv";
const B: &str = "session-key-B/0123456789abcdefghijklmnopqrstuv";
/// A fixed "now": 2023-11-14T22:13:20Z.
const NOW: u64 = 1_700_000_000;
const NONE: Timeouts = Timeouts {
    idle: None,
    absolute: None,
};

fn keys(secrets: &[&str]) -> SessionKeys {
    SessionKeys::from_secrets(secrets).unwrap()
}

fn session(keys: &SessionKeys, endpoint: &str) -> Session {
    Session::new(keys.endpoint_id(0, "reviews", endpoint), NOW)
}

fn raw(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value).unwrap()
}

#[test]
fn round_trip() {
    let keys = keys(&[A]);
    for s in [
        session(&keys, "10.0.0.7:8080"),
        Session {
            endpoint: EndpointId(u64::MAX),
            replica: 0,
            created: NOW - 3600,
            refreshed: NOW - 10,
        },
        Session {
            endpoint: EndpointId(0),
            replica: 0,
            created: 0,
            refreshed: 0,
        },
    ] {
        let value = keys.encode(&s);
        assert_eq!(value.len(), 66, "{value}");
        let expected = Verified {
            key_index: 0,
            session: s,
        };
        assert_eq!(keys.decode(&value, NOW, &NONE), Ok(expected));
        // Cookie values may come quoted.
        assert_eq!(
            keys.decode(&format!("\"{value}\""), NOW, &NONE),
            Ok(expected)
        );
    }
}

#[test]
fn layout_is_the_documented_one() {
    let keys = keys(&[A]);
    let s = Session {
        endpoint: EndpointId(0x0102_0304_0506_0708),
        replica: 0,
        created: NOW,
        refreshed: NOW + 60,
    };
    let bytes = raw(&keys.encode(&s));
    assert_eq!(bytes.len(), 49);
    assert_eq!(bytes[0], 1, "version");
    assert_eq!(bytes[1..9], NOW.to_be_bytes());
    assert_eq!(bytes[9..17], (NOW + 60).to_be_bytes());
    assert_eq!(bytes[17..25], 0x0102_0304_0506_0708u64.to_be_bytes());
    assert_eq!(bytes[25..33], 0u64.to_be_bytes(), "replica");
    // The tag, computed here from the documentation, not with the module's helpers.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(A.as_bytes()).unwrap();
    mac.update(b"sticky-session/v1");
    mac.update(&bytes[..33]);
    assert_eq!(bytes[33..], mac.finalize().into_bytes()[..16]);
}

#[test]
fn endpoint_id_is_the_documented_hmac() {
    let keys = keys(&[A]);
    let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(A.as_bytes()).unwrap();
    derive.update(b"sticky-session/endpoint-id/v1");
    let id_key = derive.finalize().into_bytes();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&id_key).unwrap();
    mac.update(b"reviews\x0010.0.0.7:8080 reviews-v1-abc");
    let digest = mac.finalize().into_bytes();
    let expected = u64::from_be_bytes(digest[..8].try_into().unwrap());
    assert_eq!(
        keys.endpoint_id(0, "reviews", "10.0.0.7:8080 reviews-v1-abc"),
        EndpointId(expected)
    );
}

/// The format is shared by every replica and every version of the gateway that runs beside
/// another during a rollout: a change here breaks live sessions and needs a new version byte.
#[test]
fn golden_value() {
    let keys = keys(&[A]);
    let s = session(&keys, "10.1.2.3:8080");
    assert_eq!(s.endpoint, EndpointId(GOLDEN_ID));
    assert_eq!(keys.encode(&s), GOLDEN_VALUE);
}
/// Computed independently (Python's `hmac`) from the documented layout.
const GOLDEN_ID: u64 = 0xec25_f532_fc4a_e286;
const GOLDEN_VALUE: &str = "AQAAAABlU_EAAAAAAGVT8QDsJfUy_ErihgAAAAAAAAAArEU6wIzYOo89qKPUCZcCvg";

#[test]
fn endpoint_ids_depend_on_key_cluster_and_endpoint() {
    let a = keys(&[A, B]);
    let id = a.endpoint_id(0, "reviews", "10.0.0.7:8080");
    assert_eq!(id, a.endpoint_id(0, "reviews", "10.0.0.7:8080"));
    assert_ne!(id, a.endpoint_id(1, "reviews", "10.0.0.7:8080"), "key");
    assert_ne!(id, a.endpoint_id(0, "ratings", "10.0.0.7:8080"), "cluster");
    assert_ne!(id, a.endpoint_id(0, "reviews", "10.0.0.8:8080"), "endpoint");
    // The separator: moving a byte across the boundary changes the id.
    assert_ne!(
        a.endpoint_id(0, "ab", "c:80"),
        a.endpoint_id(0, "a", "bc:80")
    );
}

#[test]
fn rotation_an_old_key_still_verifies() {
    let old = keys(&[B]);
    let s = session(&old, "10.0.0.7:8080");
    let value = old.encode(&s);

    let rotated = keys(&[A, B]);
    let verified = rotated.decode(&value, NOW, &NONE).unwrap();
    assert_eq!(verified.key_index, 1);
    assert_eq!(verified.session, s);
    // The endpoint resolves in the table of the key that verified it.
    assert_eq!(
        verified.session.endpoint,
        rotated.endpoint_id(1, "reviews", "10.0.0.7:8080")
    );
    assert_ne!(
        verified.session.endpoint,
        rotated.endpoint_id(0, "reviews", "10.0.0.7:8080")
    );
    // The new key signs.
    let reissued = rotated.encode(&Session {
        endpoint: rotated.endpoint_id(0, "reviews", "10.0.0.7:8080"),
        replica: 0,
        ..s
    });
    assert_eq!(rotated.decode(&reissued, NOW, &NONE).unwrap().key_index, 0);
    assert_eq!(old.decode(&reissued, NOW, &NONE), Err(Ignored::Forged));

    // Once the old key is removed, its values are forged.
    assert_eq!(keys(&[A]).decode(&value, NOW, &NONE), Err(Ignored::Forged));
}

#[test]
fn replicas_with_the_same_secrets_agree() {
    let one = keys(&[A, B]);
    let two = SessionKeys::from_secrets([A.to_owned(), B.to_owned()]).unwrap();
    let s = session(&one, "10.0.0.7:8080");
    assert_eq!(s.endpoint, two.endpoint_id(0, "reviews", "10.0.0.7:8080"));
    let value = one.encode(&s);
    assert_eq!(value, two.encode(&s));
    assert_eq!(two.decode(&value, NOW, &NONE).unwrap().session, s);
}

#[test]
fn random_keys_work_and_differ() {
    let one = SessionKeys::random();
    let two = SessionKeys::random();
    assert_eq!(one.len(), 1);
    let s = session(&one, "10.0.0.7:8080");
    let value = one.encode(&s);
    assert_eq!(one.decode(&value, NOW, &NONE).unwrap().session, s);
    assert_eq!(two.decode(&value, NOW, &NONE), Err(Ignored::Forged));
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let keys = keys(&[A, B]);
    let value = keys.encode(&session(&keys, "10.0.0.7:8080"));
    let bytes = raw(&value);
    // Flips in the decoded bytes, encoded again: the tag no longer matches (the version byte
    // is checked before the tag).
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1 << bit;
            let got = keys.decode(&URL_SAFE_NO_PAD.encode(&flipped), NOW, &NONE);
            let expected = if i == 0 {
                Ignored::Garbled
            } else {
                Ignored::Forged
            };
            assert_eq!(got, Err(expected), "byte {i} bit {bit}");
        }
    }
    // Flips in the value's characters: another base64 digit (forged), a character outside the
    // alphabet or the last digit's unused bits set (garbled), or not UTF-8 at all.
    let mut tried = 0;
    for i in 0..value.len() {
        for bit in 0..8 {
            let mut flipped = value.clone().into_bytes();
            flipped[i] ^= 1 << bit;
            let Ok(flipped) = String::from_utf8(flipped) else {
                continue;
            };
            tried += 1;
            let got = keys.decode(&flipped, NOW, &NONE);
            assert!(
                matches!(got, Err(Ignored::Forged | Ignored::Garbled)),
                "char {i} bit {bit}: {got:?}"
            );
        }
    }
    assert!(tried > 66 * 6, "{tried}");
}

#[test]
fn malformed_values_are_garbled() {
    let keys = keys(&[A]);
    let value = keys.encode(&session(&keys, "10.0.0.7:8080"));
    let mut wrong_version = raw(&value);
    wrong_version[0] = 2;
    let unicode = "é".repeat(33); // 66 bytes of UTF-8, not base64
    let inputs = [
        String::new(),
        "\"\"".to_owned(),
        "\"".to_owned(),
        format!("\"{value}"),
        format!("{value}\""),
        format!(" {value}"),
        value[..54].to_owned(),
        value[..40].to_owned(),
        format!("{value}A"),
        format!("{value}="),
        format!("{value}{value}"),
        value.replace(['-', '_'], "+").replace('A', "+"),
        "=".repeat(66),
        " ".repeat(66),
        "\0".repeat(66),
        unicode,
        "🍪".repeat(14),
        "a".repeat(MAX_VALUE_LEN + 1),
        "A".repeat(1 << 20),
        format!("\"{}\"", "A".repeat(1 << 20)),
        URL_SAFE_NO_PAD.encode(&wrong_version),
        URL_SAFE_NO_PAD.encode([0u8; 40]),
        URL_SAFE_NO_PAD.encode([0u8; 42]),
        // The same bytes in padded and standard base64.
        general_purpose::URL_SAFE.encode(raw(&value)),
        general_purpose::STANDARD.encode(raw(&value)),
    ];
    for input in inputs {
        let shown: String = input.chars().take(80).collect();
        assert_eq!(
            keys.decode(&input, NOW, &NONE),
            Err(Ignored::Garbled),
            "{shown:?}"
        );
    }
}

#[test]
fn garbage_never_verifies() {
    let keys = keys(&[A]);
    let mut rng = fastrand::Rng::with_seed(7);
    let alphabet: Vec<char> =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_\"=+/ é🍪\0"
            .chars()
            .collect();
    for _ in 0..20_000 {
        let len = match rng.u8(..4) {
            0 => 66,
            1 => 57,
            _ => rng.usize(..300),
        };
        let input: String = (0..len)
            .map(|_| alphabet[rng.usize(..alphabet.len())])
            .collect();
        let got = keys.decode(&input, NOW, &NONE);
        assert!(
            matches!(got, Err(Ignored::Garbled | Ignored::Forged)),
            "{input:?}: {got:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_strings_never_verify(input in any::<String>()) {
        let keys = keys(&[A]);
        prop_assert!(keys.decode(&input, NOW, &NONE).is_err());
    }

    #[test]
    fn well_formed_unsigned_values_are_forged(
        bytes in proptest::collection::vec(any::<u8>(), 49),
        quoted in any::<bool>(),
    ) {
        let keys = keys(&[A, B]);
        let mut bytes = bytes;
        bytes[0] = 1;
        let value = URL_SAFE_NO_PAD.encode(&bytes);
        let value = if quoted { format!("\"{value}\"") } else { value };
        prop_assert_eq!(keys.decode(&value, NOW, &NONE), Err(Ignored::Forged));
    }

    #[test]
    fn every_session_round_trips(
        endpoint in any::<u64>(),
        created in 0..NOW,
        since_created in 0..NOW,
    ) {
        let keys = keys(&[A]);
        let s = Session {
            endpoint: EndpointId(endpoint),
            replica: 0,
            created,
            refreshed: (created + since_created).min(NOW),
        };
        let value = keys.encode(&s);
        prop_assert_eq!(value.len(), 66);
        prop_assert_eq!(
            keys.decode(&value, NOW, &NONE),
            Ok(Verified { key_index: 0, session: s })
        );
    }
}

#[test]
fn absolute_timeout_counts_from_created() {
    let keys = keys(&[A]);
    let timeouts = Timeouts {
        idle: None,
        absolute: Some(Duration::from_secs(3600)),
    };
    // Refreshed a moment ago, but created an hour ago.
    let s = Session {
        endpoint: EndpointId(1),
        replica: 0,
        created: NOW,
        refreshed: NOW + 3590,
    };
    let value = keys.encode(&s);
    assert!(keys.decode(&value, NOW + 3599, &timeouts).is_ok());
    assert_eq!(
        keys.decode(&value, NOW + 3600, &timeouts),
        Err(Ignored::Expired)
    );
    assert_eq!(
        keys.decode(&value, NOW + 100_000, &timeouts),
        Err(Ignored::Expired)
    );
    // Without timeouts, a session never expires.
    assert!(keys.decode(&value, u64::MAX, &NONE).is_ok());
}

#[test]
fn idle_timeout_counts_from_refreshed() {
    let keys = keys(&[A]);
    let timeouts = Timeouts {
        idle: Some(Duration::from_secs(600)),
        absolute: Some(Duration::from_secs(86_400)),
    };
    let s = Session {
        endpoint: EndpointId(1),
        replica: 0,
        created: NOW - 7200,
        refreshed: NOW,
    };
    let value = keys.encode(&s);
    assert!(keys.decode(&value, NOW + 599, &timeouts).is_ok());
    assert_eq!(
        keys.decode(&value, NOW + 600, &timeouts),
        Err(Ignored::Expired)
    );
    // Sub-second timeouts: passed once the whole seconds reach them.
    let short = Timeouts {
        idle: Some(Duration::from_millis(1500)),
        absolute: None,
    };
    assert!(keys.decode(&value, NOW + 1, &short).is_ok());
    assert_eq!(keys.decode(&value, NOW + 2, &short), Err(Ignored::Expired));
}

#[test]
fn needs_refresh_after_half_the_idle_timeout() {
    let s = Session::new(EndpointId(1), NOW);
    let timeouts = Timeouts {
        idle: Some(Duration::from_secs(600)),
        absolute: None,
    };
    assert!(!timeouts.needs_refresh(&s, NOW));
    assert!(!timeouts.needs_refresh(&s, NOW + 300));
    assert!(timeouts.needs_refresh(&s, NOW + 301));
    assert!(timeouts.needs_refresh(&s, NOW + 10_000));
    // A clock behind the value's: nothing to refresh.
    assert!(!timeouts.needs_refresh(&s, NOW - 100));
    // Without an idle timeout, never (the absolute timeout is not moved by a refresh).
    let absolute_only = Timeouts {
        idle: None,
        absolute: Some(Duration::from_secs(600)),
    };
    assert!(!absolute_only.needs_refresh(&s, NOW + 10_000));
    assert!(!NONE.needs_refresh(&s, NOW + 10_000));
}

#[test]
fn values_from_the_future_beyond_the_skew_are_ignored() {
    let keys = keys(&[A]);
    let skew = MAX_CLOCK_SKEW.as_secs();
    let at = |created, refreshed| {
        keys.decode(
            &keys.encode(&Session {
                endpoint: EndpointId(1),
                replica: 0,
                created,
                refreshed,
            }),
            NOW,
            &NONE,
        )
    };
    assert!(at(NOW + skew, NOW + skew).is_ok());
    assert!(at(NOW, NOW + skew).is_ok());
    assert_eq!(at(NOW, NOW + skew + 1), Err(Ignored::Future));
    assert_eq!(at(NOW + skew + 1, NOW + skew + 1), Err(Ignored::Future));
    assert_eq!(at(u64::MAX, u64::MAX), Err(Ignored::Future));
    // Near the end of time, `now + skew` must not overflow.
    let late = keys.encode(&Session::new(EndpointId(1), u64::MAX));
    assert!(keys.decode(&late, u64::MAX, &NONE).is_ok());
}

#[test]
fn refreshed_before_created_is_garbled_even_when_signed() {
    let keys = keys(&[A]);
    let value = keys.encode(&Session {
        endpoint: EndpointId(1),
        replica: 0,
        created: NOW,
        refreshed: NOW - 1,
    });
    assert_eq!(keys.decode(&value, NOW, &NONE), Err(Ignored::Garbled));
}

#[test]
fn reasons_have_distinct_labels_and_messages() {
    let labels: Vec<&str> = Ignored::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels, ["garbled", "forged", "expired", "future"]);
    let messages: std::collections::HashSet<String> =
        Ignored::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), Ignored::ALL.len());
}

// --- opacity -----------------------------------------------------------------------------------

/// Every reading of `value` someone might try: the text itself, base64 in both alphabets
/// (lenient about padding and trailing bits), hex, and the hex rendering of the decoded bytes.
fn readings(value: &str) -> Vec<Vec<u8>> {
    let lenient = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let url = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let mut out = vec![value.as_bytes().to_vec()];
    let decoded = url.decode(value).expect("the value is base64url");
    out.push(hex(&decoded).into_bytes());
    out.push(hex(&decoded).to_uppercase().into_bytes());
    out.push(decoded);
    if let Ok(bytes) = standard.decode(value) {
        out.push(bytes);
    }
    // In the standard alphabet, `-` and `_` are `+` and `/`: the same bits, read as standard.
    if let Ok(bytes) = standard.decode(value.replace('-', "+").replace('_', "/")) {
        out.push(bytes);
    }
    if let Some(bytes) = unhex(value) {
        out.push(bytes);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_opaque(value: &str, endpoint: &str, needles: &[(&str, Vec<u8>)]) {
    // Envoy's value for the same endpoint, in both alphabets.
    let envoy = [
        general_purpose::STANDARD_NO_PAD.encode(endpoint),
        URL_SAFE_NO_PAD.encode(endpoint),
    ];
    let mut all: Vec<(&str, Vec<u8>)> = needles.to_vec();
    all.push(("the whole endpoint", endpoint.as_bytes().to_vec()));
    all.push(("Envoy's value", envoy[0].as_bytes().to_vec()));
    all.push(("Envoy's value, url-safe", envoy[1].as_bytes().to_vec()));
    for reading in readings(value) {
        for (what, needle) in &all {
            assert!(
                !contains(&reading, needle),
                "{what} ({needle:02x?}) is readable in {value:?}: {reading:02x?}"
            );
        }
    }
}

#[test]
fn the_value_does_not_show_an_ipv4_address() {
    let keys = keys(&[A]);
    let endpoint = "10.1.2.3:8080";
    let value = keys.encode(&session(&keys, endpoint));
    // Deterministic (fixed key and times), so the 2-byte port check cannot fail by chance on
    // another run; this is the value it checks.
    assert_eq!(value, GOLDEN_VALUE);
    assert_opaque(
        &value,
        endpoint,
        &[
            ("the address text", b"10.1.2.3".to_vec()),
            ("the port text", b"8080".to_vec()),
            ("the address bytes", vec![10, 1, 2, 3]),
            ("the address in hex", b"0a010203".to_vec()),
            ("the port bytes", 8080u16.to_be_bytes().to_vec()),
            ("the port in hex", b"1f90".to_vec()),
        ],
    );
}

#[test]
fn the_value_does_not_show_an_ipv6_address() {
    let keys = keys(&[A]);
    let endpoint = "[fd00::7]:9090";
    let value = keys.encode(&session(&keys, endpoint));
    assert_eq!(value, GOLDEN_VALUE_V6);
    let ip: std::net::Ipv6Addr = "fd00::7".parse().unwrap();
    assert_opaque(
        &value,
        endpoint,
        &[
            ("the address text", b"fd00::7".to_vec()),
            ("the port text", b"9090".to_vec()),
            ("the address bytes", ip.octets().to_vec()),
            ("the address in hex", hex(&ip.octets()).into_bytes()),
            ("the port bytes", 9090u16.to_be_bytes().to_vec()),
            ("the port in hex", b"2382".to_vec()),
        ],
    );
}
const GOLDEN_VALUE_V6: &str = "AQAAAABlU_EAAAAAAGVT8QB4F1Ex7la-AAAAAAAAAAAAtQ5CRLYmDmUlSeWBTOt_WA";

#[test]
fn the_opacity_check_finds_an_envoy_style_value() {
    // The check above is able to fail: Envoy's value shows the address.
    let endpoint = "10.1.2.3:8080";
    let envoy = general_purpose::STANDARD.encode(endpoint);
    let readable = readings(&envoy)
        .iter()
        .any(|reading| contains(reading, b"10.1.2.3"));
    assert!(readable);
}

// --- keys ------------------------------------------------------------------------------------

#[test]
fn key_file_skips_comments_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(
        &path,
        format!("# session keys, newest first\n\n   {A}  \r\n# old one, remove after 2024-01-01\n\t{B}\n\n"),
    )
    .unwrap();
    let from_file = SessionKeys::from_file(&path).unwrap();
    assert_eq!(from_file.len(), 2);
    let from_secrets = keys(&[A, B]);
    let s = session(&from_secrets, "10.0.0.7:8080");
    // The first key signs: the file's keys are A then B, trimmed.
    assert_eq!(from_file.encode(&s), from_secrets.encode(&s));
    let only_b = keys(&[B]);
    let verified = from_file.decode(&only_b.encode(&s), NOW, &NONE).unwrap();
    assert_eq!(verified.key_index, 1);
}

#[test]
fn key_file_too_short_key_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let short = "too-short-secret-31-bytes-xxxxx";
    assert_eq!(short.len(), 31);
    std::fs::write(&path, format!("# keys\n{A}\n\n{short}\n")).unwrap();
    let err = SessionKeys::from_file(&path).unwrap_err();
    assert!(
        matches!(
            err,
            KeyFileError::TooShort {
                line: 4,
                len: 31,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("line 4"), "{message}");
    assert!(message.contains("openssl rand -base64 48"), "{message}");
    assert!(!message.contains(short), "{message}");
    assert!(!format!("{err:?}").contains(short));

    // 32 bytes are enough.
    std::fs::write(&path, format!("{short}x\n")).unwrap();
    assert_eq!(SessionKeys::from_file(&path).unwrap().len(), 1);
}

#[test]
fn key_file_without_keys_or_missing_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    std::fs::write(&path, "# nothing yet\n\n   \n").unwrap();
    let err = SessionKeys::from_file(&path).unwrap_err();
    assert!(matches!(err, KeyFileError::NoKey { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()));
    assert!(err.to_string().contains("openssl rand -base64 48"));

    let missing = dir.path().join("no-such-file");
    let err = SessionKeys::from_file(&missing).unwrap_err();
    assert!(matches!(err, KeyFileError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()));
}

#[test]
fn from_secrets_checks_the_secrets() {
    assert_eq!(
        SessionKeys::from_secrets(Vec::<&str>::new()).unwrap_err(),
        KeyError::NoKey
    );
    assert_eq!(
        SessionKeys::from_secrets([A, "short"]).unwrap_err(),
        KeyError::TooShort { index: 1, len: 5 }
    );
    assert_eq!(SessionKeys::from_secrets([[7u8; 32]]).unwrap().len(), 1);
}

#[test]
fn debug_shows_no_key_material() {
    let keys = keys(&[A, B]);
    let shown = format!("{keys:?} {keys:#?}");
    assert_eq!(format!("{keys:?}"), "SessionKeys { keys: 2 }");
    for secret in [A, B] {
        assert!(!shown.contains(secret));
        assert!(!shown.contains(&secret[..8]));
        assert!(!shown.contains(&hex(secret.as_bytes())[..16]));
    }
}
