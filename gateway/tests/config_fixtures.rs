//! The project's own Istio YAML, which a clone of the repository alone carries, whether or not
//! Istio's corpus (config_corpus.rs) is beside it: every field the loader implements
//! ([`supported_fields`]) is written in at least one of its files, every file loads without an
//! error, and every folder passes `gateway check` without one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gateway::config::{
    Diagnostic, LoadOptions, Severity, check, config_files, load_paths, supported_fields,
};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// The fixtures, relative to the crate: the Istio YAML the stack runs on, and
/// `testdata/supported`, written to show every supported field in a realistic configuration.
const FIXTURES: [&str; 3] = [
    "../k8s/istio",
    "testdata/article-gateway",
    "testdata/supported",
];

fn fixture_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dirs: Vec<PathBuf> = FIXTURES.iter().map(|d| root.join(d)).collect();
    let files = config_files(&dirs).expect("the fixture folders are readable");
    assert!(files.len() >= FIXTURES.len(), "{files:?}");
    files
}

/// A field written in a fixture: its resource kind and the keys leading to it from the
/// document (`spec`, `http`, `match`, `headers`, `x-user`, `exact`), list indices left out.
type Written = (String, Vec<String>);

/// Every field written under `spec` of the Istio networking documents in `text`.
fn written_fields(text: &str, out: &mut BTreeSet<Written>) {
    let docs = MarkedYaml::load_from_str(text).expect("fixture YAML is well-formed");
    for doc in &docs {
        let YamlData::Mapping(map) = &doc.data else {
            continue;
        };
        let value = |name: &str| {
            map.iter().find_map(|(k, v)| match (&k.data, &v.data) {
                (YamlData::Value(Scalar::String(k)), _) if k == name => Some(v),
                _ => None,
            })
        };
        let string = |name: &str| match value(name).map(|v| &v.data) {
            Some(YamlData::Value(Scalar::String(s))) => s.to_string(),
            _ => String::new(),
        };
        if !string("apiVersion").starts_with("networking.istio.io/") {
            continue;
        }
        if let Some(spec) = value("spec") {
            walk(spec, &string("kind"), &mut vec!["spec".to_owned()], out);
        }
    }
}

fn walk(node: &MarkedYaml<'_>, kind: &str, path: &mut Vec<String>, out: &mut BTreeSet<Written>) {
    match &node.data {
        YamlData::Mapping(map) => {
            for (key, value) in map {
                let YamlData::Value(Scalar::String(key)) = &key.data else {
                    continue;
                };
                path.push(key.to_string());
                out.insert((kind.to_owned(), path.clone()));
                walk(value, kind, path, out);
                path.pop();
            }
        }
        YamlData::Sequence(items) => items.iter().for_each(|item| walk(item, kind, path, out)),
        YamlData::Tagged(_, inner) => walk(inner, kind, path, out),
        _ => {}
    }
}

/// True when the supported `path` (`*` for a map key) is the written field `keys`.
fn is_written(path: &str, keys: &[String]) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    parts.len() == keys.len() && parts.iter().zip(keys).all(|(p, k)| *p == "*" || p == k)
}

/// The errors among `findings`, one per line.
fn errors<'a>(findings: impl IntoIterator<Item = &'a Diagnostic>) -> String {
    let lines: Vec<String> = findings
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    lines.join("\n")
}

/// Each file loads alone; each folder, one configuration as the gateway would be given it (a
/// file may name a Gateway of another), passes `gateway check`.
#[test]
fn every_fixture_loads_and_checks_without_an_error() {
    for file in fixture_files() {
        let loaded = load_paths(std::slice::from_ref(&file), &LoadOptions::default())
            .expect("fixture readable");
        let errors = errors(&loaded.diagnostics);
        assert!(errors.is_empty(), "{}:\n{errors}", file.display());
    }
    for dir in FIXTURES {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let loaded = load_paths(std::slice::from_ref(&dir), &LoadOptions::default())
            .expect("fixtures readable");
        let findings = check(&loaded.config);
        let errors = errors(loaded.diagnostics.iter().chain(&findings));
        assert!(errors.is_empty(), "{}:\n{errors}", dir.display());
    }
}

#[test]
fn the_fixtures_write_every_supported_field() {
    let mut written = BTreeSet::new();
    for file in fixture_files() {
        let text = std::fs::read_to_string(&file).expect("fixture readable");
        written_fields(&text, &mut written);
    }
    let missing: Vec<String> = supported_fields()
        .into_iter()
        .filter(|(kind, path)| {
            !written
                .iter()
                .any(|(k, keys)| k == kind && is_written(path, keys))
        })
        .map(|(kind, path)| format!("{kind} {path}"))
        .collect();
    assert!(
        missing.is_empty(),
        "{} supported fields are written in no fixture ({}):\n{}",
        missing.len(),
        FIXTURES.join(", "),
        missing.join("\n")
    );
}

/// The list the coverage is measured against follows supported fields only.
#[test]
fn supported_fields_leave_out_ignored_ones() {
    let fields = supported_fields();
    let has = |kind: &str, path: &str| fields.iter().any(|(k, p)| *k == kind && p == path);
    assert!(has(
        "DestinationRule",
        "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize"
    ));
    assert!(has("VirtualService", "spec.http.match.headers.*.exact"));
    assert!(has("Gateway", "spec.servers.port.number"));
    assert!(has("ServiceEntry", "spec.endpoints.address"));
    assert!(has("Gateway", "spec.servers.tls.credentialName"));
    assert!(has("DestinationRule", "spec.subsets.trafficPolicy.tls.sni"));
    // Ignored, and `sup` fields inside ignored messages, are not in it.
    assert!(!has(
        "DestinationRule",
        "spec.trafficPolicy.tls.clientCertificate"
    ));
    assert!(!has("Gateway", "spec.servers.tls.caCrl"));
    assert!(!has("DestinationRule", "spec.trafficPolicy.tunnel"));
    assert!(!has(
        "DestinationRule",
        "spec.trafficPolicy.tunnel.protocol"
    ));
    assert!(!has("VirtualService", "spec.http.redirect.uri"));
    assert!(!has("Gateway", "spec.servers.port.targetPort"));
}
