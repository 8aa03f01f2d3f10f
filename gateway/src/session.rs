//! Persistent-session values: the opaque, authenticated cookie or header value that pins a user
//! to one endpoint, and the keys that sign it.
//!
//! Istio's service label `istio.io/persistent-session: <cookie>` (or
//! `istio.io/persistent-session-header: <header>`) turns on Envoy's stateful-session filter: the
//! endpoint chosen for a request is written into a cookie or header, and later requests that
//! carry it go to that endpoint while it is healthy. Envoy's value is the endpoint's `ip:port`
//! in base64, which shows pod addresses to every client and lets a client aim at any pod it
//! likes. This module builds a better value, and only the value:
//!
//! - **Opaque.** The value names its endpoint by an [`EndpointId`], 64 bits of a keyed HMAC of
//!   the cluster name and the endpoint's identity string; without the key the address cannot
//!   be recovered, not even by trying every address of a /16.
//! - **Authenticated.** A 128-bit HMAC-SHA256 tag covers every byte; a value the client made up
//!   or changed is [`Ignored::Forged`], so a client can only return to an endpoint the gateway
//!   gave it.
//! - **Timed.** The value carries when the session was created and when it was last refreshed,
//!   checked against the Gateway API's `sessionPersistence` timeouts ([`Timeouts`]) by the
//!   gateway itself, whatever the client does with cookie expiry.
//! - **Shared.** Every gateway replica given the same key file honours every other replica's
//!   values; nothing is stored server-side.
//!
//! What it does not do: it reads no request and writes no response, keeps no table from ids to
//! endpoints (the caller builds one per key index, see [`SessionKeys::endpoint_id`]), decides
//! nothing about health or fallback, and reads no clock ([`unix_now`] is a helper for callers;
//! every function takes `now`). It does not encrypt: the times inside are readable by whoever
//! decodes the base64 (they are not secret; the endpoint id is what must stay opaque). It does
//! not wipe key material from memory, nor revoke single sessions (rotate the key for that).
//!
//! # Value layout
//!
//! base64url without padding (66 characters) of 49 bytes:
//!
//! | bytes | field |
//! |-------|-------|
//! | 0 | version, `1` |
//! | 1..9 | `created`, unix seconds, u64 big-endian |
//! | 9..17 | `refreshed`, unix seconds, u64 big-endian |
//! | 17..25 | endpoint id, u64 big-endian |
//! | 25..33 | replica tag ([`replica_tag`] of its `x-served-by`; 0: none), u64 big-endian |
//! | 33..49 | first 16 bytes of HMAC-SHA256(signing key, `"sticky-session/v1"` ‖ bytes 0..33) |
//!
//! # Keys and rotation
//!
//! A key file holds one secret per line (surrounding whitespace trimmed, blank lines and `#`
//! comments skipped), each at least [`MIN_SECRET_LEN`] bytes of text, used as it is written
//! (not base64-decoded). The **first** key signs, **all** verify. To rotate: put the new key
//! first and keep the old one below it until every session signed by it has expired (its
//! absolute timeout, or its idle timeout when there is no absolute one), then remove it.
//! Per key, two HMAC keys are used: the secret itself for the tag, and
//! HMAC-SHA256(secret, `"sticky-session/endpoint-id/v1"`) for endpoint ids, so the id of an
//! endpoint changes with the key and a leaked id table says nothing under the next key.
//! [`Verified::key_index`] says which key verified a value; the caller resolves the endpoint id
//! in that key's table and, when the index is not 0, should issue a fresh value under key 0
//! (same `created`) so that live sessions move to the new key before the old one is removed.
//!
//! # Decisions
//!
//! - Checks run in this order, and the first that fails names the [`Ignored`] reason: size,
//!   base64 and version ([`Ignored::Garbled`]); the tag against each key in order, in constant
//!   time ([`Ignored::Forged`]); `refreshed` before `created` ([`Ignored::Garbled`]: only a bug
//!   or a leaked key makes a signed value like that); `created` or `refreshed` more than
//!   [`MAX_CLOCK_SKEW`] ahead of `now` ([`Ignored::Future`], a reason of its own because with a
//!   valid tag it means one replica's clock is wrong); then the timeouts ([`Ignored::Expired`]).
//! - Timeouts are whole seconds: the absolute timeout has passed once `now - created >=
//!   absolute`, the idle timeout once `now - refreshed >= idle`; a value up to
//!   [`MAX_CLOCK_SKEW`] in the future counts as 0 seconds old.
//! - The idle timeout is measured from the last *refresh*, not the last request: rewriting the
//!   value on every response would cost a `Set-Cookie` per response, so the caller rewrites it
//!   only once [`Timeouts::needs_refresh`] says half the idle timeout has passed. A session
//!   used steadily therefore never idles out, and one left alone expires between half the idle
//!   timeout and the full one after its last request.
//! - Surrounding double quotes are accepted and ignored (cookie values may be quoted); anything
//!   longer than [`MAX_VALUE_LEN`] is garbled before any decoding; no input panics.
//! - base64url without padding, as that needs no quoting in a cookie or header.
//!
//! A leaf: it imports nothing of the crate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted, in bytes: HMAC-SHA256's own output size.
pub const MIN_SECRET_LEN: usize = 32;

/// How far in the future `created` or `refreshed` may be before a value is ignored as
/// [`Ignored::Future`]: replicas' clocks may disagree by this much.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// The longest input [`SessionKeys::decode`] looks at; anything longer is garbled unread.
pub const MAX_VALUE_LEN: usize = 256;

/// The version byte of the layout this module writes.
const VERSION: u8 = 1;
/// Version, created, refreshed, endpoint id, replica.
const BODY_LEN: usize = 1 + 8 + 8 + 8 + 8;
/// The tag's length: half of HMAC-SHA256's output.
const TAG_LEN: usize = 16;
/// The decoded value's length.
const RAW_LEN: usize = BODY_LEN + TAG_LEN;
/// The value's length in base64url without padding.
const ENCODED_LEN: usize = (RAW_LEN * 4).div_ceil(3);
/// Prefixed to the body before it is tagged: a tag made for anything else never verifies here.
const TAG_DOMAIN: &[u8] = b"sticky-session/v1";
/// The message whose HMAC under a secret is that secret's endpoint-id key.
const ENDPOINT_ID_DOMAIN: &[u8] = b"sticky-session/endpoint-id/v1";

/// An endpoint's opaque name inside a session value: the first 8 bytes of
/// HMAC-SHA256(endpoint-id key, cluster ‖ `"\0"` ‖ endpoint), big-endian. See
/// [`SessionKeys::endpoint_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(pub u64);

/// What a session value says: which endpoint, since when, last rewritten when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Session {
    /// The endpoint, as [`SessionKeys::endpoint_id`] names it under the key that signs the value
    /// (key 0 when encoding).
    pub endpoint: EndpointId,
    /// When the session began, unix seconds: the absolute timeout counts from here. Kept as it is
    /// when the value is refreshed or re-signed.
    pub created: u64,
    /// When the value was last written, unix seconds: the idle timeout counts from here.
    pub refreshed: u64,
    /// Which replica answered at that endpoint: a hash of its `x-served-by` ([`replica_tag`]),
    /// 0 when it names none. Docker and Kubernetes reuse addresses: a new replica on the
    /// endpoint's address answers with another name, and the session is then not its.
    pub replica: u64,
}

/// The tag of a replica's name (its `x-served-by`) in a session: never 0, which stands for
/// "no name".
#[must_use]
pub fn replica_tag(name: &[u8]) -> u64 {
    // FNV-1a: stable across versions and builds (every gateway replica computes the same), and
    // nothing here is secret (the client sees the name in `x-served-by` anyway).
    let hash = name.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    hash.max(1)
}

impl Session {
    /// A session beginning `now` on `endpoint`.
    #[must_use]
    pub fn new(endpoint: EndpointId, now: u64) -> Self {
        Self {
            endpoint,
            created: now,
            refreshed: now,
            replica: 0,
        }
    }
}

/// A value that passed every check, and the index of the key that verified it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Which key verified the tag (0 is the signing key); resolve [`Session::endpoint`] in the
    /// endpoint-id table of this key.
    pub key_index: usize,
    /// What the value says.
    pub session: Session,
}

/// Why a session value was ignored: the request is then routed as if it carried none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Ignored {
    /// Not a value of ours: wrong size, not base64url, unknown version, or times that no
    /// signer writes (`refreshed` before `created`).
    #[error("garbled session value")]
    Garbled,
    /// Well formed, but no configured key verifies its tag: made up, altered, or signed by a key
    /// since removed.
    #[error("session value not signed by any configured key")]
    Forged,
    /// Signed by us, but its absolute or idle timeout has passed.
    #[error("session expired")]
    Expired,
    /// Signed by us, but created or refreshed more than the allowed clock skew after `now`: a
    /// replica's clock is ahead.
    #[error("session value from the future (clock skew between replicas?)")]
    Future,
}

impl Ignored {
    /// Every reason, for registering metric labels up front.
    pub const ALL: [Ignored; 4] = [
        Ignored::Garbled,
        Ignored::Forged,
        Ignored::Expired,
        Ignored::Future,
    ];

    /// The reason as a metric label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Ignored::Garbled => "garbled",
            Ignored::Forged => "forged",
            Ignored::Expired => "expired",
            Ignored::Future => "future",
        }
    }
}

/// The Gateway API's `sessionPersistence` timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// `idleTimeout`: the session ends when this long has passed since it was last used; here,
    /// since the value was last refreshed (see [`Timeouts::needs_refresh`]).
    pub idle: Option<Duration>,
    /// `absoluteTimeout`: the session ends when this long has passed since it was created,
    /// however much it is used.
    pub absolute: Option<Duration>,
}

impl Timeouts {
    /// True when the caller should write a refreshed value (`refreshed = now`) on this response:
    /// once more than half the idle timeout has passed since the last refresh. Always false
    /// without an idle timeout.
    #[must_use]
    pub fn needs_refresh(&self, session: &Session, now: u64) -> bool {
        self.idle
            .is_some_and(|idle| elapsed(session.refreshed, now) > idle / 2)
    }

    /// True when either timeout has passed at `now`.
    #[must_use]
    pub fn expired(&self, session: &Session, now: u64) -> bool {
        let passed = |timeout: Option<Duration>, since: u64| {
            timeout.is_some_and(|timeout| elapsed(since, now) >= timeout)
        };
        passed(self.absolute, session.created) || passed(self.idle, session.refreshed)
    }
}

/// Whole seconds from `since` to `now`; 0 when `since` is later.
fn elapsed(since: u64, now: u64) -> Duration {
    Duration::from_secs(now.saturating_sub(since))
}

/// The current time in unix seconds, as the functions here take it (0 if the clock is before
/// 1970).
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A set of secrets given to [`SessionKeys::from_secrets`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No secret at all.
    #[error("no session key")]
    NoKey,
    /// A secret shorter than [`MIN_SECRET_LEN`] bytes.
    #[error(
        "session key {index} is {len} bytes, at least {MIN_SECRET_LEN} are needed \
         (make one with `openssl rand -base64 48`)"
    )]
    TooShort {
        /// The secret's position, from 0.
        index: usize,
        /// Its length in bytes.
        len: usize,
    },
}

/// A key file that cannot be used. Never shows key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read (or is not UTF-8 text).
    #[error("cannot read session key file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no key, only blank lines and comments.
    #[error(
        "session key file {} holds no key (one secret per line, the first signs; make one \
         with `openssl rand -base64 48`)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A key shorter than [`MIN_SECRET_LEN`] bytes.
    #[error(
        "session key file {}, line {line}: the key is {len} bytes, at least {MIN_SECRET_LEN} \
         are needed (make one with `openssl rand -base64 48`)",
        path.display()
    )]
    TooShort {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// The key's length in bytes (after trimming).
        len: usize,
    },
}

/// One secret, prepared: HMAC states keyed once, cloned per use.
#[derive(Clone)]
struct Key {
    /// Keyed with the secret: tags values.
    tag: HmacSha256,
    /// Keyed with HMAC-SHA256(secret, [`ENDPOINT_ID_DOMAIN`]): names endpoints.
    endpoint_id: HmacSha256,
}

impl Key {
    fn new(secret: &[u8]) -> Self {
        let tag = keyed(secret);
        let mut derive = tag.clone();
        derive.update(ENDPOINT_ID_DOMAIN);
        let endpoint_id = keyed(&derive.finalize().into_bytes());
        Self { tag, endpoint_id }
    }

    /// The tag of `body` under this key, not yet finalized.
    fn tag_of(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = self.tag.clone();
        mac.update(TAG_DOMAIN);
        mac.update(body);
        mac
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length (longer ones are hashed first): this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The keys session values are signed and verified with: the first signs, all verify.
///
/// `Debug` shows how many keys there are, never the keys.
#[derive(Clone)]
pub struct SessionKeys {
    /// Never empty.
    keys: Vec<Key>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl SessionKeys {
    /// Keys from secrets, the signing one first; each at least [`MIN_SECRET_LEN`] bytes.
    pub fn from_secrets<I, S>(secrets: I) -> Result<Self, KeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut keys = Vec::new();
        for (index, secret) in secrets.into_iter().enumerate() {
            let secret = secret.as_ref();
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyError::TooShort {
                    index,
                    len: secret.len(),
                });
            }
            keys.push(Key::new(secret));
        }
        if keys.is_empty() {
            return Err(KeyError::NoKey);
        }
        Ok(Self { keys })
    }

    /// Reads a key file: one secret per line, trimmed; blank lines and lines starting with `#`
    /// skipped. The first secret signs, every one verifies.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut secrets = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let secret = line.trim();
            if secret.is_empty() || secret.starts_with('#') {
                continue;
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyFileError::TooShort {
                    path: path.to_path_buf(),
                    line: n + 1,
                    len: secret.len(),
                });
            }
            secrets.push(secret);
        }
        match Self::from_secrets(secrets) {
            Ok(keys) => Ok(keys),
            // Lengths were checked above, with their line: only an empty file is left.
            Err(KeyError::NoKey | KeyError::TooShort { .. }) => Err(KeyFileError::NoKey {
                path: path.to_path_buf(),
            }),
        }
    }

    /// One fresh 32-byte key from the operating system's random source: values live only as
    /// long as this process and are honoured by no other replica. For a single gateway, or
    /// when no key file is configured.
    ///
    /// # Panics
    ///
    /// When the operating system has no random source to read.
    #[must_use]
    pub fn random() -> Self {
        let mut secret = [0u8; MIN_SECRET_LEN];
        getrandom::fill(&mut secret).expect("the OS random source failed");
        Self::from_secrets([secret]).expect("a 32-byte secret is long enough")
    }

    /// How many keys there are (at least 1); key indexes run from 0 to `len() - 1`.
    #[must_use]
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The opaque id of `endpoint` in `cluster` under key `key_index`: the first 8 bytes of
    /// HMAC-SHA256(that key's endpoint-id key, cluster ‖ `"\0"` ‖ endpoint).
    ///
    /// `endpoint` is the endpoint's identity string as the caller chooses it (its address key,
    /// `10.0.0.7:8080`, possibly followed by the replica's name); the same string must be used
    /// when encoding and when resolving. Keyed, so nobody without the key can map ids back to
    /// addresses by trying them all; per key, so the caller builds one id → endpoint table per
    /// key index and values signed by an older key still resolve. 64 bits make a collision
    /// within one cluster negligible (about n²/2⁶⁵ for n endpoints).
    ///
    /// # Panics
    ///
    /// When `key_index >= self.len()`.
    #[must_use]
    pub fn endpoint_id(&self, key_index: usize, cluster: &str, endpoint: &str) -> EndpointId {
        let mut mac = self.keys[key_index].endpoint_id.clone();
        mac.update(cluster.as_bytes());
        mac.update(&[0]);
        mac.update(endpoint.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        EndpointId(u64::from_be_bytes(id))
    }

    /// The value for `session`, signed with key 0: 66 characters of base64url, no padding.
    ///
    /// `session.endpoint` must be the id computed with key index 0
    /// (`keys.endpoint_id(0, cluster, endpoint)`), the key the value is signed with; a decoder
    /// resolves it in the table of the key that verified the value.
    #[must_use]
    pub fn encode(&self, session: &Session) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..9].copy_from_slice(&session.created.to_be_bytes());
        raw[9..17].copy_from_slice(&session.refreshed.to_be_bytes());
        raw[17..25].copy_from_slice(&session.endpoint.0.to_be_bytes());
        raw[25..33].copy_from_slice(&session.replica.to_be_bytes());
        let tag = self.keys[0]
            .tag_of(&raw[..BODY_LEN])
            .finalize()
            .into_bytes();
        raw[BODY_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a value from a request at `now` (unix seconds) against `timeouts`: the session it
    /// carries and the key that verified it, or why it is to be ignored. Surrounding double
    /// quotes are ignored. Never panics, whatever the input.
    pub fn decode(&self, value: &str, now: u64, timeouts: &Timeouts) -> Result<Verified, Ignored> {
        if value.len() > MAX_VALUE_LEN {
            return Err(Ignored::Garbled);
        }
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if value.len() != ENCODED_LEN {
            return Err(Ignored::Garbled);
        }
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(Ignored::Garbled),
        }
        if raw[0] != VERSION {
            return Err(Ignored::Garbled);
        }
        let (body, tag) = raw.split_at(BODY_LEN);
        let key_index = self
            .keys
            .iter()
            .position(|key| key.tag_of(body).verify_truncated_left(tag).is_ok())
            .ok_or(Ignored::Forged)?;
        let field = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&body[at..at + 8]);
            u64::from_be_bytes(bytes)
        };
        let session = Session {
            created: field(1),
            refreshed: field(9),
            endpoint: EndpointId(field(17)),
            replica: field(25),
        };
        if session.refreshed < session.created {
            return Err(Ignored::Garbled);
        }
        let latest = now.saturating_add(MAX_CLOCK_SKEW.as_secs());
        if session.created > latest || session.refreshed > latest {
            return Err(Ignored::Future);
        }
        if timeouts.expired(&session, now) {
            return Err(Ignored::Expired);
        }
        Ok(Verified { key_index, session })
    }
}

#[cfg(test)]
mod tests;
