//! The admin pages' JSON for model values, in Istio's field names where Istio has one: hash
//! keys, balancing policies, endpoint sources, `match` conditions, outlier detection, and
//! durations written as Istio writes them (`5s`, `1.5s`, `100ms`).
//!
//! Hand-written rather than derived, so the model carries no serialization and the pages keep
//! their shape when a model type changes.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::balancer::Policy;
use crate::cluster::Source;
use crate::config::model::{HashKey, RequestMatch, StringMatcher};
use crate::health::OutlierPolicy;

/// A duration as Istio writes one: `0s`, `5s`, `1.5s`, `90s`, `100ms`, `250us`, `7ns`; readable
/// back by the config's duration parser.
pub(crate) fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}us", decimal(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    format!("{}s", decimal(nanos, 1_000_000_000))
}

/// `value / unit` in decimal, without trailing zeros.
fn decimal(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let fraction = value % unit;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The `consistentHash` hash key: `{"httpHeaderName": "x-user"}`, `{"httpCookie": {...}}`,
/// `{"useSourceIp": true}` or `{"httpQueryParameterName": "u"}`.
pub(crate) fn hash_key(key: &HashKey) -> Value {
    match key {
        HashKey::Header(name) => json!({"httpHeaderName": name.as_str()}),
        HashKey::Cookie { name, path, ttl } => {
            let mut cookie = Map::new();
            cookie.insert("name".into(), json!(name));
            if let Some(path) = path {
                cookie.insert("path".into(), json!(path));
            }
            if let Some(ttl) = ttl {
                cookie.insert("ttl".into(), json!(duration(*ttl)));
            }
            json!({"httpCookie": cookie})
        }
        HashKey::SourceIp => json!({"useSourceIp": true}),
        HashKey::QueryParameter(name) => json!({"httpQueryParameterName": name}),
    }
}

/// The cluster's `loadBalancer`: `{"simple": "ROUND_ROBIN"}` or
/// `{"consistentHash": {"maglev": {"tableSize": 65537}}}`.
pub(crate) fn policy(policy: &Policy) -> Value {
    match policy {
        Policy::RoundRobin => json!({"simple": "ROUND_ROBIN"}),
        Policy::Random => json!({"simple": "RANDOM"}),
        Policy::LeastRequest { choice_count } => {
            json!({"simple": "LEAST_REQUEST", "choiceCount": choice_count})
        }
        Policy::RingHash(size) => {
            json!({"consistentHash": {"ringHash": {"minimumRingSize": size.minimum()}}})
        }
        Policy::Maglev(size) => json!({"consistentHash": {"maglev": {"tableSize": size.get()}}}),
    }
}

/// The policy in a few words, for text answers: `simple ROUND_ROBIN`, `consistentHash maglev`.
pub(crate) fn policy_name(policy: &Policy) -> &'static str {
    match policy {
        Policy::RoundRobin => "simple ROUND_ROBIN",
        Policy::Random => "simple RANDOM",
        Policy::LeastRequest { .. } => "simple LEAST_REQUEST",
        Policy::RingHash(_) => "consistentHash ringHash",
        Policy::Maglev(_) => "consistentHash maglev",
    }
}

/// Where the endpoints come from: `{"static": [{"address": "10.0.0.1:8080", "weight": 1}]}`
/// or `{"dns": [{"host": "svc.local", "port": 8080, "weight": 1}]}`.
pub(crate) fn source(source: &Source) -> Value {
    match source {
        Source::Static(endpoints) => {
            let list: Vec<Value> = endpoints
                .iter()
                .map(|e| json!({"address": &*e.key, "weight": e.weight}))
                .collect();
            json!({ "static": list })
        }
        Source::Dns(targets) => {
            let list: Vec<Value> = targets
                .iter()
                .map(|t| json!({"host": t.host, "port": t.port, "weight": t.weight}))
                .collect();
            json!({ "dns": list })
        }
    }
}

/// One `match[]` entry, only the conditions it sets: `{"uri": {"prefix": "/"}}`,
/// `{"headers": {"x-canary": {"exact": "1"}}}`.
pub(crate) fn request_match(m: &RequestMatch) -> Value {
    let mut out = Map::new();
    if let Some(name) = &m.name {
        out.insert("name".into(), json!(name));
    }
    for (field, matcher) in [
        ("uri", &m.uri),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(matcher) = matcher {
            out.insert(field.into(), string_match(matcher));
        }
    }
    for (field, entries) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        if !entries.is_empty() {
            let map: Map<String, Value> = entries
                .iter()
                .map(|(name, matcher)| (name.clone(), string_match(matcher)))
                .collect();
            out.insert(field.into(), Value::Object(map));
        }
    }
    if m.ignore_uri_case {
        out.insert("ignoreUriCase".into(), json!(true));
    }
    Value::Object(out)
}

/// `StringMatch`: `{"exact": ..}`, `{"prefix": ..}`, `{"regex": ..}` (as written, without the
/// anchors and case flag the gateway compiles in), or `{}` for "present".
fn string_match(m: &StringMatcher) -> Value {
    match m {
        StringMatcher::Exact(s) => json!({"exact": s}),
        StringMatcher::Prefix(s) => json!({"prefix": s}),
        StringMatcher::Regex(re) => {
            let text = re.as_str();
            let text = text.strip_prefix("(?i)").unwrap_or(text);
            let text = text
                .strip_prefix("^(?:")
                .and_then(|t| t.strip_suffix(")$"))
                .unwrap_or(text);
            json!({ "regex": text })
        }
        StringMatcher::Present => json!({}),
    }
}

/// `outlierDetection` in Istio's fields (plus Envoy's `maxEjectionTime`).
pub(crate) fn outlier(o: &OutlierPolicy) -> Value {
    let mut out = Map::new();
    if let Some(n) = o.consecutive_5xx {
        out.insert("consecutive5xxErrors".into(), json!(n));
    }
    if let Some(n) = o.consecutive_gateway {
        out.insert("consecutiveGatewayErrors".into(), json!(n));
    }
    out.insert("interval".into(), json!(duration(o.interval)));
    out.insert(
        "baseEjectionTime".into(),
        json!(duration(o.base_ejection_time)),
    );
    out.insert(
        "maxEjectionTime".into(),
        json!(duration(o.max_ejection_time)),
    );
    out.insert("maxEjectionPercent".into(), json!(o.max_ejection_percent));
    out.insert("minHealthPercent".into(), json!(o.min_health_percent));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_istio_writes_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_micros(1250), "1.25ms"),
            (Duration::from_micros(250), "250us"),
            (Duration::from_nanos(7), "7ns"),
        ];
        for (d, want) in cases {
            assert_eq!(duration(d), want);
            assert_eq!(crate::config::duration::parse(want), Ok(d));
        }
    }
}
