//! `match[]`: the conditions that select an HTTP route, with regexes compiled.
//!
//! Pure: spec in, model and findings out; no I/O.

use std::collections::BTreeMap;

use regex::Regex;

use super::Problems;
use crate::config::spec;

/// One `match[]` entry: every condition must hold.
#[derive(Debug, Clone, Default)]
pub struct RequestMatch {
    /// `name`.
    pub name: Option<String>,
    /// `uri`.
    pub uri: Option<StringMatcher>,
    /// `method`.
    pub method: Option<StringMatcher>,
    /// `authority`.
    pub authority: Option<StringMatcher>,
    /// `headers`, names lowercased.
    pub headers: Vec<(String, StringMatcher)>,
    /// `queryParams`.
    pub query_params: Vec<(String, StringMatcher)>,
    /// `withoutHeaders`: none of these may match.
    pub without_headers: Vec<(String, StringMatcher)>,
    /// `ignoreUriCase`: exact/prefix `uri` compare case-insensitively (a `uri` regex is
    /// already compiled case-insensitive, as Istio does with `(?i)`).
    pub ignore_uri_case: bool,
}

/// `StringMatch`.
#[derive(Debug, Clone)]
pub enum StringMatcher {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `regex`, anchored at both ends as Envoy matches it.
    Regex(Regex),
    /// An empty `{}` on a header or query parameter: present with any value.
    Present,
}

pub(super) fn request_match(
    m: spec::HttpMatchRequest,
    path: &str,
    p: &mut Problems,
) -> RequestMatch {
    let one = |field: &str, s: Option<spec::StringMatch>, p: &mut Problems| {
        s.and_then(|s| string_matcher(s, &format!("{path}.{field}"), false, p))
    };
    let ignore_uri_case = m.ignore_uri_case.unwrap_or(false);
    let uri = one("uri", m.uri, p).map(|uri| match uri {
        StringMatcher::Regex(re) if ignore_uri_case => Regex::new(&format!("(?i){}", re.as_str()))
            .map_or(StringMatcher::Regex(re), StringMatcher::Regex),
        other => other,
    });
    let method = one("method", m.method, p);
    let authority = one("authority", m.authority, p);
    let mut map =
        |field: &str, entries: Option<BTreeMap<String, spec::StringMatch>>, lower: bool| {
            entries
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(name, s)| {
                    let matcher = string_matcher(s, &format!("{path}.{field}.{name}"), true, p)?;
                    let name = if lower {
                        name.to_ascii_lowercase()
                    } else {
                        name
                    };
                    Some((name, matcher))
                })
                .collect::<Vec<_>>()
        };
    RequestMatch {
        name: m.name,
        uri,
        method,
        authority,
        headers: map("headers", m.headers, true),
        query_params: map("queryParams", m.query_params, false),
        without_headers: map("withoutHeaders", m.without_headers, true),
        ignore_uri_case,
    }
}

fn string_matcher(
    s: spec::StringMatch,
    path: &str,
    empty_means_present: bool,
    p: &mut Problems,
) -> Option<StringMatcher> {
    match (s.exact, s.prefix, s.regex) {
        (Some(e), None, None) => Some(StringMatcher::Exact(e)),
        (None, Some(prefix), None) => Some(StringMatcher::Prefix(prefix)),
        (None, None, Some(re)) => {
            // Envoy (and so Istio) runs RE2 and matches the whole value; the `regex` crate
            // shares RE2's syntax and linear-time guarantee, so anchoring is all that differs.
            match Regex::new(&format!("^(?:{re})$")) {
                Ok(compiled) => Some(StringMatcher::Regex(compiled)),
                Err(e) => {
                    let text = e.to_string();
                    let last = text.lines().last().unwrap_or_default();
                    let why = last.trim_start_matches("error: ").to_owned();
                    p.error(
                        format!("{path}.regex"),
                        format!("regex {re:?} does not compile: {why}"),
                    );
                    None
                }
            }
        }
        (None, None, None) if empty_means_present => Some(StringMatcher::Present),
        (None, None, None) => {
            p.error(path, "one of exact, prefix or regex is required");
            None
        }
        _ => {
            p.error(path, "only one of exact, prefix or regex may be set");
            None
        }
    }
}
