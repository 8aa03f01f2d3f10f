//! Istio's own sample and test YAML (68 files from istio/istio, see shared/istio-corpus): every
//! file loads without an error but the out-of-scope TLS modes ([`OUT_OF_SCOPE`]), no real Istio
//! field is called unknown, and every other Gateway, VirtualService, DestinationRule and
//! ServiceEntry in it reaches the model.
//!
//! Where the corpus is found, and what `ISTIO_CORPUS` changes: support/corpus.rs. Without it (a
//! clone of the repository alone, or `ISTIO_CORPUS=own`) these tests read the project's own
//! Istio YAML instead; config_fixtures.rs checks that YAML covers every supported field.

#[path = "support/corpus.rs"]
mod corpus;

use std::path::{Path, PathBuf};
use std::process::Command;

use corpus::Lookup;
use gateway::config::{LoadOptions, Severity, check, load_paths};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

const CORPUS_FILES: usize = 68;

/// Valid Istio YAML the gateway refuses by decision (config/model/tls.rs, docs/tls.md): TLS
/// routed by SNI without terminating it (`protocol: TLS`), Istio's mesh mTLS (`ISTIO_MUTUAL`)
/// and upstream `MUTUAL`. Each corpus file with the field paths of its errors, and how many of
/// its [Gateway, VirtualService, DestinationRule, ServiceEntry] they keep out of the model.
const OUT_OF_SCOPE: &[(&str, &[&str], [usize; 4])] = &[
    (
        "samples/bookinfo/networking/destination-rule-all-mtls.yaml",
        &["spec.trafficPolicy.tls.mode"; 4],
        [0, 0, 4, 0],
    ),
    (
        "samples/multicluster/expose-istiod.yaml",
        &[
            "spec.servers[0].port.protocol",
            "spec.servers[1].port.protocol",
        ],
        [1, 0, 0, 0],
    ),
    (
        "samples/multicluster/expose-services.yaml",
        &["spec.servers[0].port.protocol"],
        [1, 0, 0, 0],
    ),
    (
        "tests/testdata/config/se-example.yaml",
        &["spec.trafficPolicy.tls.mode"],
        [0, 0, 1, 0],
    ),
];

/// What the tests read.
enum Corpus {
    /// Istio's own files.
    Istio(PathBuf),
    /// The project's own Istio YAML, when Istio's is absent or `ISTIO_CORPUS=own`.
    Own(Vec<PathBuf>),
}

/// The corpus, or `None` when `ISTIO_CORPUS=skip`.
fn corpus() -> Option<Corpus> {
    let own = || {
        let dirs = [
            "../k8s/istio",
            "testdata/article",
            "testdata/article-gateway",
            "testdata/check",
            "testdata/supported",
        ];
        Corpus::Own(dirs.iter().map(|d| corpus::crate_dir().join(d)).collect())
    };
    match corpus::lookup() {
        Lookup::Found(dir) => Some(Corpus::Istio(dir)),
        Lookup::Own => Some(own()),
        Lookup::Skip => None,
        Lookup::Absent => {
            eprintln!(
                "config_corpus: no shared/istio-corpus above {}: checking the project's own Istio YAML instead (ISTIO_CORPUS=require makes that an error)",
                corpus::crate_dir().display()
            );
            Some(own())
        }
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Istio networking documents of the four kinds in `text`, counted without the gateway's loader.
fn istio_kinds(text: &str) -> [usize; 4] {
    let mut counts = [0; 4];
    let docs = MarkedYaml::load_from_str(text).expect("corpus YAML is well-formed");
    for doc in &docs {
        let YamlData::Mapping(map) = &doc.data else {
            continue;
        };
        let get = |name: &str| {
            map.iter().find_map(|(k, v)| match (&k.data, &v.data) {
                (YamlData::Value(Scalar::String(k)), YamlData::Value(Scalar::String(v)))
                    if k == name =>
                {
                    Some(v.to_string())
                }
                _ => None,
            })
        };
        if !get("apiVersion").is_some_and(|v| v.starts_with("networking.istio.io/")) {
            continue;
        }
        let kind = [
            "Gateway",
            "VirtualService",
            "DestinationRule",
            "ServiceEntry",
        ]
        .iter()
        .position(|k| get("kind").as_deref() == Some(k));
        if let Some(i) = kind {
            counts[i] += 1;
        }
    }
    counts
}

#[test]
fn every_corpus_file_loads_and_every_supported_resource_is_parsed() {
    let mut files = Vec::new();
    let mut istio_dir = None;
    match corpus() {
        None => return,
        Some(Corpus::Istio(dir)) => {
            yaml_files(&dir, &mut files);
            assert_eq!(files.len(), CORPUS_FILES, "corpus at {}", dir.display());
            istio_dir = Some(dir);
        }
        Some(Corpus::Own(dirs)) => dirs.iter().for_each(|d| yaml_files(d, &mut files)),
    }
    let mut out_of_scope_seen = 0;
    let mut total = [0; 4];
    for file in &files {
        let loaded =
            load_paths(std::slice::from_ref(file), &LoadOptions::default()).expect("readable");
        let unknown: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.message.starts_with("unknown field"))
            .collect();
        assert!(
            unknown.is_empty(),
            "real Istio fields called unknown: {unknown:#?}"
        );
        let errors: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        let refused = istio_dir
            .as_ref()
            .and_then(|dir| file.strip_prefix(dir).ok())
            .and_then(|rel| OUT_OF_SCOPE.iter().find(|(f, ..)| rel == Path::new(f)));
        let (paths, dropped): (&[&str], _) = refused.map_or((&[], [0; 4]), |(_, p, d)| (p, *d));
        out_of_scope_seen += usize::from(refused.is_some());
        let error_paths: Vec<_> = errors
            .iter()
            .map(|d| d.path.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(error_paths, paths, "{}: {errors:#?}", file.display());
        assert!(
            errors.iter().all(|d| d.message.contains("not supported")),
            "{}: {errors:#?}",
            file.display()
        );
        let mut expected = istio_kinds(&std::fs::read_to_string(file).expect("readable"));
        for (n, gone) in expected.iter_mut().zip(dropped) {
            *n -= gone;
        }
        let c = &loaded.config;
        let got = [
            c.gateways.len(),
            c.virtual_services.len(),
            c.destination_rules.len(),
            c.service_entries.len(),
        ];
        assert_eq!(
            got,
            expected,
            "{}: [Gateway, VirtualService, DestinationRule, ServiceEntry]",
            file.display()
        );
        for (t, n) in total.iter_mut().zip(got) {
            *t += n;
        }
        // The analysis runs on every file too; its findings are the corpus's business.
        let _ = check(&loaded.config);
    }
    assert!(
        total.iter().all(|n| *n > 0),
        "every kind is exercised: {total:?}"
    );
    if istio_dir.is_some() {
        assert_eq!(
            out_of_scope_seen,
            OUT_OF_SCOPE.len(),
            "every listed file is in the corpus"
        );
    }
}

#[test]
fn ignored_fields_are_reported_with_their_path() {
    let Some(Corpus::Istio(dir)) = corpus() else {
        eprintln!("config_corpus: this file is Istio's own; not checked without the corpus");
        return;
    };
    let file = dir.join("tests/testdata/config/destination-rule-all.yaml");
    let loaded = load_paths(&[file], &LoadOptions::default()).expect("readable");
    let ignored: Vec<_> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.message == "not supported by this gateway, ignored")
        .map(|d| (d.location.line, d.path.as_deref().unwrap_or_default()))
        .collect();
    // `tls` (line 45, `mode: DISABLE`) is read since TLS is supported.
    assert_eq!(
        ignored,
        [(39, "spec.trafficPolicy.connectionPool.http.maxRetries")]
    );
}

#[test]
fn the_whole_corpus_loads_and_checks_as_one_configuration() {
    let dirs = match corpus() {
        None => return,
        Some(Corpus::Istio(dir)) => vec![dir],
        Some(Corpus::Own(dirs)) => dirs,
    };
    let loaded = load_paths(&dirs, &LoadOptions::default()).expect("readable");
    let skipped = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Info)
        .count();
    assert!(
        skipped > 0,
        "non-Istio kinds (Deployments, Gateway API) are skipped with info lines"
    );
    let findings = check(&loaded.config);
    assert!(
        findings
            .iter()
            .all(|d| d.resource.is_some() && d.path.is_some()),
        "{findings:#?}"
    );
}

/// `just test` says which corpus runs before the tests do (`cargo test` captures their output):
/// `scripts/istio-corpus.sh` must find the same folder as [`corpus::lookup`].
#[test]
fn the_justfile_line_names_the_folder_the_tests_read() {
    let script = corpus::crate_dir().join("../scripts/istio-corpus.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("dir")
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}: {out:?}", script.display());
    let said = String::from_utf8(out.stdout).expect("a path");
    let said = said.trim();
    match corpus::lookup() {
        Lookup::Found(dir) => assert_eq!(
            Path::new(said).canonicalize().ok(),
            dir.canonicalize().ok(),
            "{said:?} vs {}",
            dir.display()
        ),
        Lookup::Absent | Lookup::Own | Lookup::Skip => assert_eq!(said, ""),
    }
}
