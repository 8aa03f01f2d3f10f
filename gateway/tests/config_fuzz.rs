//! The loader never panics, whatever it is fed: a proptest stand-in for a `cargo fuzz` target
//! (cargo-fuzz needs a nightly toolchain, which this project's machines do not have).
//!
//! Inputs: arbitrary bytes, YAML-flavoured noise, well-formed documents with random values
//! (to reach every validation rule), and mutations of real documents (the fixtures, plus the
//! Istio corpus when it is present).

#[path = "support/corpus.rs"]
mod corpus;

use std::path::{Path, PathBuf};

use gateway::config::{LoadOptions, Loaded, check, duration, load_source};
use proptest::prelude::*;

/// Loads `text` and runs the analysis on the result; a panic anywhere fails the property.
fn load_and_check(text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    load_source(
        Path::new("fuzz.yaml"),
        text,
        &LoadOptions::default(),
        &mut loaded,
    );
    let _ = check(&loaded.config);
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
    loaded
}

/// Read once: every case picks one.
fn seeds() -> &'static [String] {
    static SEEDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(read_seeds)
}

fn read_seeds() -> Vec<String> {
    let mut files = Vec::new();
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    collect(&testdata, &mut files);
    // The Istio corpus adds real documents when it is around (support/corpus.rs); the
    // property holds on the fixtures alone otherwise.
    if let corpus::Lookup::Found(corpus) = corpus::lookup() {
        collect(&corpus, &mut files);
    }
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("seed readable"))
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

/// One edit of a document: where (a fraction of its length) and what.
#[derive(Debug, Clone)]
enum Edit {
    Delete(f64, usize),
    Insert(f64, &'static str),
    DuplicateLine(f64),
    Truncate(f64),
}

const TOKENS: &[&str] = &[
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "'",
    "\"",
    "\n",
    "  ",
    "\t",
    "#",
    "&a ",
    "*a",
    "!!str ",
    "---\n",
    "|\n",
    "null",
    "-1",
    "99999999999999999999",
    "1.5e400",
    "0s",
    "tableSize: 4\n",
    "weight: 101",
    "regex: '('",
    "subset: nope",
    "~",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0.0..1.0, 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        (0.0..1.0, prop::sample::select(TOKENS)).prop_map(|(at, t)| Edit::Insert(at, t)),
        (0.0..1.0).prop_map(Edit::DuplicateLine),
        (0.0..1.0).prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
        match e {
            Edit::Delete(f, n) => {
                let start = at(*f, chars.len());
                let end = (start + n).min(chars.len());
                chars.drain(start..end);
            }
            Edit::Insert(f, token) => {
                let i = at(*f, chars.len());
                chars.splice(i..i, token.chars());
            }
            Edit::DuplicateLine(f) => {
                let lines: Vec<String> = chars
                    .iter()
                    .collect::<String>()
                    .lines()
                    .map(str::to_owned)
                    .collect();
                if !lines.is_empty() {
                    let i = at(*f, lines.len() - 1);
                    let mut out = lines.clone();
                    out.insert(i, lines[i].clone());
                    chars = out.join("\n").chars().collect();
                }
            }
            Edit::Truncate(f) => chars.truncate(at(*f, chars.len())),
        }
    }
    chars.into_iter().collect()
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{1,4}(\\.[0-9]{1,3})?(ns|us|ms|s|m|h|d|)",
        "[a-zA-Z_*./()\\[\\]-]{0,12}",
        Just("{}".to_owned()),
        Just("[]".to_owned()),
        Just("true".to_owned()),
        Just("~".to_owned()),
    ]
}

/// One of `words`, or any scalar: TLS settings are mostly enum words, which random scalars
/// would almost never hit.
fn word_or_scalar(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(words).prop_map(str::to_owned),
        1 => scalar(),
    ]
}

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "https", "TLS", "TCP", "GRPC"];
const MODES: &[&str] = &[
    "SIMPLE",
    "MUTUAL",
    "OPTIONAL_MUTUAL",
    "PASSTHROUGH",
    "AUTO_PASSTHROUGH",
    "ISTIO_MUTUAL",
    "DISABLE",
    "''",
];
const VERSIONS: &[&str] = &["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3", "''"];
const SUITES: &[&str] = &[
    "ECDHE-RSA-AES128-GCM-SHA256",
    "'[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]'",
    "'[|]'",
    "'[]'",
    "TLS_AES_128_GCM_SHA256",
    "AES128-SHA",
    "ALL",
    "'!aNULL'",
    "ecdhe-rsa-aes128-gcm-sha256",
];

/// A Gateway and a DestinationRule with every TLS field, from the values given.
fn tls_document(
    protocol: &str,
    modes: [&str; 2],
    v: &[&str],
    versions: [&str; 2],
    suites: &str,
) -> String {
    format!("\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: g}}
spec:
  servers:
    - port: {{number: 443, name: p, protocol: {protocol}}}
      hosts: ['*']
      tls:
        mode: {0}
        credentialName: {2}
        credentialNames: [{3}]
        serverCertificate: {4}
        privateKey: {5}
        caCertificates: {6}
        tlsCertificates: [{{serverCertificate: {4}, privateKey: {5}}}]
        subjectAltNames: [{2}]
        minProtocolVersion: {8}
        maxProtocolVersion: {9}
        cipherSuites: [{10}]
        httpsRedirect: {7}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: d}}
spec:
  host: a
  trafficPolicy:
    tls: {{mode: {1}, sni: {2}, caCertificates: {6}, insecureSkipVerify: {7}, subjectAltNames: [{3}]}}
    portLevelSettings: [{{port: {{number: 1}}, tls: {{mode: {0}}}}}]
  subsets: [{{name: s, trafficPolicy: {{tls: {{mode: {1}, credentialName: {5}}}}}}}]
", modes[0], modes[1], v[0], v[1], v[2], v[3], v[4], v[5], versions[0], versions[1], suites)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_tls_settings_never_panic(
        protocol in word_or_scalar(PROTOCOLS),
        modes in prop::collection::vec(word_or_scalar(MODES), 2),
        versions in prop::collection::vec(word_or_scalar(VERSIONS), 2),
        suites in prop::collection::vec(word_or_scalar(SUITES), 0..4),
        v in prop::collection::vec(scalar(), 6),
    ) {
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        let text = tls_document(&protocol, [&modes[0], &modes[1]], &v, [&versions[0], &versions[1]], &suites.join(", "));
        load_and_check(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        load_and_check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_flavoured_noise_never_panics(text in "(apiVersion: networking.istio.io/v1\nkind: (DestinationRule|VirtualService|ServiceEntry|Gateway)\n)?[a-zA-Z0-9:{}\\[\\] \n'\"#&*!|>.,-]{0,300}") {
        load_and_check(&text);
    }

    #[test]
    fn mutated_real_documents_never_panic(seed in any::<prop::sample::Index>(), edits in prop::collection::vec(edit(), 1..6)) {
        let seeds = seeds();
        let text = apply(&seeds[seed.index(seeds.len())], &edits);
        load_and_check(&text);
    }

    #[test]
    fn random_values_in_valid_shapes_never_panic(
        v in prop::collection::vec(scalar(), 16),
    ) {
        let text = format!("\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {0}}}
spec:
  host: {1}
  trafficPolicy:
    loadBalancer:
      consistentHash: {{httpHeaderName: {2}, maglev: {{tableSize: {3}}}, minimumRingSize: {4}}}
    connectionPool: {{tcp: {{maxConnections: {5}, connectTimeout: {6}}}, http: {{idleTimeout: {7}}}}}
    outlierDetection: {{interval: {8}, maxEjectionPercent: {9}}}
    portLevelSettings: [{{port: {{number: {10}}}, loadBalancer: {{simple: {11}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {0}}}
spec:
  hosts: [{1}]
  gateways: [{2}]
  http:
    - match: [{{uri: {{regex: {12}}}, headers: {{x: {{prefix: {13}}}}}}}]
      timeout: {6}
      retries: {{attempts: {14}, perTryTimeout: {7}, retryOn: {15}}}
      route:
        - {{destination: {{host: {1}, subset: {2}, port: {{number: {10}}}}}, weight: {9}}}
        - {{destination: {{host: {1}}}, weight: {14}}}
", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]);
        load_and_check(&text);
    }

    #[test]
    fn durations_never_panic_and_milliseconds_round_trip(text in "\\PC{0,24}", ms in 0u64..10_000_000) {
        let _ = duration::parse(&text);
        prop_assert_eq!(duration::parse(&format!("{ms}ms")), Ok(std::time::Duration::from_millis(ms)));
    }
}

#[test]
fn well_formed_random_values_do_reach_validation() {
    // Guards the property above: its template must parse, so the values hit the rules.
    let loaded = load_and_check(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec:\n  host: a\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x, maglev: {tableSize: 4}}\n",
    );
    let messages: Vec<_> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(messages, ["4 is not prime"]);
}

#[test]
fn well_formed_tls_settings_do_reach_validation() {
    // Guards `random_tls_settings_never_panic`: its template parses, so the values hit the TLS
    // rules (here: a server naming its certificate twice, and an upstream mode refused).
    let text = tls_document(
        "HTTPS",
        ["SIMPLE", "ISTIO_MUTUAL"],
        &["c", "n", "/c.crt", "/c.key", "/ca.crt", "true"],
        ["TLSV1_2", "TLSV1_3"],
        "ECDHE-RSA-AES128-GCM-SHA256",
    );
    let loaded = load_and_check(&text);
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == gateway::config::Severity::Error)
        .map(|d| d.path.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        errors,
        [
            "spec.servers[0].tls",
            "spec.trafficPolicy.tls.mode",
            "spec.subsets[0].trafficPolicy.tls.mode"
        ]
    );
}
