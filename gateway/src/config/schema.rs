//! Walks a parsed YAML document against Istio's field list: each field is supported, known but
//! ignored by this gateway, or unknown.
//!
//! Why a walk before serde: serde can either ignore unknown fields silently or reject them all,
//! but Istio's contract has three answers. The walk reports ignored fields (warning) and unknown
//! ones (error, with the nearest real name as a hint), records the line/column of every value
//! by its field path, and hands serde a JSON value holding only supported fields — so the spec
//! types stay a plain one-to-one mirror of the YAML.

mod fields;

use std::collections::HashMap;

use saphyr::{MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use super::diagnostic::Severity;
pub(crate) use fields::{DESTINATION_RULE, GATEWAY, SERVICE_ENTRY, VIRTUAL_SERVICE};

/// The shape of one field's value.
#[derive(Clone, Copy)]
pub(crate) enum Ty {
    /// A scalar or a list of scalars; serde checks the type.
    Scalar,
    /// A message, or a list of them.
    Msg(&'static Msg),
    /// `map<string, Message>`.
    MapOf(&'static Msg),
    /// A free-form value (labels, `map<string,string>`, Kubernetes metadata), copied as is.
    Free,
}

/// What this gateway does with a field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    /// Implemented.
    Yes,
    /// A current Istio field the gateway does not implement.
    Ignored,
    /// A field Istio removed (`reserved` in the proto) that old YAML still carries.
    Removed,
}

/// One proto field.
pub(crate) struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub support: Support,
}

/// One proto message: its fields by JSON name.
pub(crate) struct Msg(pub &'static [Field]);

impl Msg {
    fn field(&self, name: &str) -> Option<&Field> {
        self.0.iter().find(|f| f.name == name)
    }
}

/// Every Istio field this gateway implements, as `(kind, field path)`, read from the field table
/// the loader walks with. A path leaves list indices out and writes a map key as `*`
/// (`("VirtualService", "spec.http.match.headers.*.exact")`). Only supported fields are followed:
/// a field inside an ignored message (`spec.trafficPolicy.tunnel.protocol`) is not listed.
pub fn supported_fields() -> Vec<(&'static str, String)> {
    let kinds: [(&'static str, &'static Msg); 4] = [
        ("Gateway", &GATEWAY),
        ("VirtualService", &VIRTUAL_SERVICE),
        ("DestinationRule", &DESTINATION_RULE),
        ("ServiceEntry", &SERVICE_ENTRY),
    ];
    let mut out = Vec::new();
    for (kind, msg) in kinds {
        let mut paths = Vec::new();
        supported_paths(msg, "spec", &mut paths);
        out.extend(paths.into_iter().map(|path| (kind, path)));
    }
    out
}

fn supported_paths(msg: &'static Msg, prefix: &str, out: &mut Vec<String>) {
    for field in msg.0.iter().filter(|f| f.support == Support::Yes) {
        let path = format!("{prefix}.{}", field.name);
        out.push(path.clone());
        match field.ty {
            Ty::Msg(inner) => supported_paths(inner, &path, out),
            Ty::MapOf(inner) => supported_paths(inner, &format!("{path}.*"), out),
            Ty::Scalar | Ty::Free => {}
        }
    }
}

/// A finding of the walk, positioned but not yet attached to a file or resource.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub severity: Severity,
    pub path: String,
    pub at: (usize, usize),
    pub message: String,
    pub hint: Option<String>,
}

/// Line/column (1-based) of every value, by field path (`spec.http[0].route[1].weight`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Positions(HashMap<String, (usize, usize)>);

impl Positions {
    /// Records where `path` is (for fields read outside the walk, like `metadata.name`).
    pub fn insert(&mut self, path: &str, at: (usize, usize)) {
        self.0.insert(path.to_owned(), at);
    }

    /// True when the document has a value at `path`, supported or not.
    pub fn contains(&self, path: &str) -> bool {
        self.0.contains_key(path)
    }

    /// Where `path` is, or its nearest recorded parent (a missing field is reported at the
    /// mapping that lacks it).
    pub fn at(&self, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(at) = self.0.get(path) {
                return *at;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => return self.0.get("").copied().unwrap_or((1, 1)),
            }
        }
    }
}

/// The walk's result: the supported part as JSON, positions and findings.
pub(crate) struct Walked {
    pub value: Value,
    pub positions: Positions,
    pub findings: Vec<Finding>,
}

/// Walks `node` (found at `path`) as message `msg`.
pub(crate) fn walk(node: &MarkedYaml<'_>, path: &str, msg: &'static Msg) -> Walked {
    let mut walker = Walker {
        positions: Positions::default(),
        findings: Vec::new(),
    };
    let value = walker.typed(node, path, Ty::Msg(msg), true);
    Walked {
        value,
        positions: walker.positions,
        findings: walker.findings,
    }
}

/// 1-based line and column of a node.
pub(crate) fn position(node: &MarkedYaml<'_>) -> (usize, usize) {
    (node.span.start.line(), node.span.start.col() + 1)
}

struct Walker {
    positions: Positions,
    findings: Vec<Finding>,
}

impl Walker {
    fn finding(&mut self, severity: Severity, path: &str, node: &MarkedYaml<'_>, message: String) {
        self.findings.push(Finding {
            severity,
            path: path.to_owned(),
            at: position(node),
            message,
            hint: None,
        });
    }

    /// Walks a value of type `ty`. `active` is false inside an ignored field: only unknown
    /// fields are reported there, and the value returned is thrown away.
    fn typed(&mut self, node: &MarkedYaml<'_>, path: &str, ty: Ty, active: bool) -> Value {
        self.positions.0.insert(path.to_owned(), position(node));
        match (&node.data, ty) {
            (YamlData::Tagged(_, inner), _) => self.typed(inner, path, ty, active),
            (YamlData::Sequence(items), Ty::Msg(_) | Ty::MapOf(_)) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.typed(item, &format!("{path}[{i}]"), ty, active))
                    .collect(),
            ),
            (YamlData::Mapping(map), Ty::Msg(msg)) => self.message(map, path, msg, active),
            (YamlData::Mapping(map), Ty::MapOf(msg)) => {
                let mut out = Map::new();
                for (key, value) in map {
                    let Some(name) = self.key(key, path) else {
                        continue;
                    };
                    let child = format!("{path}.{name}");
                    out.insert(name, self.typed(value, &child, Ty::Msg(msg), active));
                }
                Value::Object(out)
            }
            _ => self.plain(node, path),
        }
    }

    fn message(
        &mut self,
        map: &saphyr::AnnotatedMapping<'_, MarkedYaml<'_>>,
        path: &str,
        msg: &'static Msg,
        active: bool,
    ) -> Value {
        let mut out = Map::new();
        for (key, value) in map {
            let Some(written) = self.key(key, path) else {
                continue;
            };
            // jsonpb, which Istio parses YAML with, also accepts the proto's snake_case name.
            let name = camel_case(&written);
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let Some(field) = msg.field(&name) else {
                self.positions.0.insert(child.clone(), position(key));
                self.finding(
                    Severity::Error,
                    &child,
                    key,
                    format!("unknown field `{written}`"),
                );
                if let Some(best) = nearest(&written, msg) {
                    let last = self.findings.len() - 1;
                    self.findings[last].hint = Some(format!("did you mean `{best}`?"));
                }
                continue;
            };
            let message = match field.support {
                Support::Yes => None,
                Support::Ignored => Some("not supported by this gateway, ignored"),
                Support::Removed => {
                    Some("removed from Istio's API (reserved in the proto), ignored")
                }
            };
            if let (true, Some(message)) = (active, message) {
                self.finding(Severity::Warning, &child, key, message.to_owned());
            }
            let keep = active && field.support == Support::Yes;
            let value = self.typed(value, &child, field.ty, keep);
            if keep {
                out.insert(name, value);
            }
        }
        Value::Object(out)
    }

    /// A mapping key as a string; other keys are errors (no Istio field has one).
    fn key(&mut self, key: &MarkedYaml<'_>, path: &str) -> Option<String> {
        match &key.data {
            YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
            YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
            _ => {
                self.finding(
                    Severity::Error,
                    path,
                    key,
                    "mapping key must be a string".to_owned(),
                );
                None
            }
        }
    }

    /// Copies a value as JSON without a schema (scalars, free-form maps).
    fn plain(&mut self, node: &MarkedYaml<'_>, path: &str) -> Value {
        self.positions.0.insert(path.to_owned(), position(node));
        match &node.data {
            YamlData::Value(scalar) => match scalar {
                Scalar::Null => Value::Null,
                Scalar::Boolean(b) => Value::Bool(*b),
                Scalar::Integer(i) => Value::Number((*i).into()),
                Scalar::FloatingPoint(f) => match Number::from_f64(f.into_inner()) {
                    Some(n) => Value::Number(n),
                    None => {
                        let message = "a number must be finite".to_owned();
                        self.finding(Severity::Error, path, node, message);
                        Value::Null
                    }
                },
                Scalar::String(s) => Value::String(s.to_string()),
            },
            YamlData::Representation(s, _, _) => Value::String(s.to_string()),
            YamlData::Sequence(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.plain(item, &format!("{path}[{i}]")))
                    .collect(),
            ),
            YamlData::Mapping(map) => {
                let mut out = Map::new();
                for (key, value) in map {
                    if let Some(name) = self.key(key, path) {
                        let child = format!("{path}.{name}");
                        out.insert(name, self.plain(value, &child));
                    }
                }
                Value::Object(out)
            }
            YamlData::Tagged(_, inner) => self.plain(inner, path),
            YamlData::Alias(_) => {
                let message = "YAML aliases are not supported".to_owned();
                self.finding(Severity::Error, path, node, message);
                Value::Null
            }
            YamlData::BadValue => {
                let message = "invalid YAML value".to_owned();
                self.finding(Severity::Error, path, node, message);
                Value::Null
            }
        }
    }
}

/// `table_size` → `tableSize`; names already in camelCase pass through.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' && !out.is_empty() {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The field of `msg` closest to a mistyped `name`, if any is close enough to be a typo.
fn nearest(name: &str, msg: &Msg) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    msg.0
        .iter()
        .map(|f| {
            let known = f.name.to_ascii_lowercase();
            // A dropped prefix (`ejectionTime` for `baseEjectionTime`) is a typo too.
            let contained = lower.len() >= 4 && known.contains(&lower);
            let score =
                strsim::jaro_winkler(&lower, &known).max(if contained { 0.85 } else { 0.0 });
            (score, f.name)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_str(yaml: &str, msg: &'static Msg) -> Walked {
        use saphyr::LoadableYamlNode;
        let docs = MarkedYaml::load_from_str(yaml).expect("valid yaml");
        walk(&docs[0], "spec", msg)
    }

    #[test]
    fn splits_supported_ignored_and_unknown() {
        let yaml = "host: a\ntrafficPolicy:\n  tunnel:\n    protocol: CONNECT\n    bogus: 1\n  loadBalancer:\n    simple: RANDOM\nsubsetz: []\n";
        let w = walk_str(yaml, &DESTINATION_RULE);
        assert_eq!(
            w.value,
            serde_json::json!({"host": "a", "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}})
        );
        let got: Vec<_> = w
            .findings
            .iter()
            .map(|f| (f.severity, f.path.as_str(), f.at, f.hint.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Severity::Warning, "spec.trafficPolicy.tunnel", (3, 3), None),
                (
                    Severity::Error,
                    "spec.trafficPolicy.tunnel.bogus",
                    (5, 5),
                    None
                ),
                (
                    Severity::Error,
                    "spec.subsetz",
                    (8, 1),
                    Some("did you mean `subsets`?")
                ),
            ]
        );
        assert_eq!(
            w.positions.at("spec.trafficPolicy.loadBalancer.simple"),
            (7, 13)
        );
        assert_eq!(
            w.positions.at("spec.trafficPolicy.loadBalancer.nope"),
            (7, 5)
        );
    }

    #[test]
    fn accepts_proto_snake_case_names() {
        let w = walk_str("maglev:\n  table_size: 7\n", &fields::CONSISTENT_HASH);
        assert!(w.findings.is_empty(), "{:?}", w.findings);
        assert_eq!(w.value, serde_json::json!({"maglev": {"tableSize": 7}}));
    }
}
