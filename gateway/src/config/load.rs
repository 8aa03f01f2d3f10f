//! Files and directories of YAML → documents → validated resources and findings.
//!
//! Loading never stops at a bad document: every document is read, each problem becomes a
//! [`Diagnostic`], and only fully valid resources enter the [`Config`]. Only I/O failures (a
//! path that cannot be read) are a [`LoadError`], because then there is nothing to report on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde::de::DeserializeOwned;

use super::diagnostic::{Diagnostic, Location, Severity};
use super::model::{self, Config, Kind, Meta, Names, Problems};
use super::schema::{self, Msg};

/// What the loader needs besides the files.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Namespace of documents without `metadata.namespace` (Istio: the `kubectl -n` namespace).
    pub namespace: String,
    /// Cluster domain used to qualify short host names.
    pub cluster_domain: String,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            namespace: "default".to_owned(),
            cluster_domain: "cluster.local".to_owned(),
        }
    }
}

/// The result of loading: the valid resources and every finding.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Resources that passed validation.
    pub config: Config,
    /// Findings in the order met.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// True when any finding is an error (a configuration the gateway must not serve).
    pub fn has_errors(&self) -> bool {
        super::diagnostic::has_errors(&self.diagnostics)
    }
}

/// Why loading could not even start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A named path could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Loads files and directories (recursively, `*.yaml` and `*.yml`, in name order).
pub fn load_paths(paths: &[PathBuf], options: &LoadOptions) -> Result<Loaded, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    let mut loaded = Loaded::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
            path: file.clone(),
            source,
        })?;
        load_source(&file, &text, options, &mut loaded);
    }
    Ok(loaded)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let read_error = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(read_error)?;
        files.push(path.to_owned());
        return Ok(());
    }
    let mut entries = std::fs::read_dir(path)
        .map_err(read_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    entries.sort();
    for entry in entries {
        let yaml = entry
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml");
        if entry.is_dir() || yaml {
            collect(&entry, files)?;
        }
    }
    Ok(())
}

/// Loads the YAML `text` of `file` (multi-document) into `loaded`. Never panics on any input.
pub fn load_source(file: &Path, text: &str, options: &LoadOptions, loaded: &mut Loaded) {
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            let location = Location {
                file: file.to_owned(),
                line: e.marker().line().max(1),
                column: e.marker().col() + 1,
            };
            let message = format!("YAML syntax error: {}", e.info());
            loaded
                .diagnostics
                .push(Diagnostic::new(Severity::Error, location, message));
            return;
        }
    };
    for doc in &docs {
        Document::new(file, doc, options, loaded).load();
    }
}

struct Document<'a, 'y> {
    file: &'a Path,
    root: &'a MarkedYaml<'y>,
    options: &'a LoadOptions,
    loaded: &'a mut Loaded,
}

impl<'a, 'y> Document<'a, 'y> {
    fn new(
        file: &'a Path,
        root: &'a MarkedYaml<'y>,
        options: &'a LoadOptions,
        loaded: &'a mut Loaded,
    ) -> Self {
        Self {
            file,
            root,
            options,
            loaded,
        }
    }

    fn at(&self, (line, column): (usize, usize)) -> Location {
        Location {
            file: self.file.to_owned(),
            line,
            column,
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        at: (usize, usize),
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let d = Diagnostic::new(severity, self.at(at), message);
        self.loaded.diagnostics.push(d);
        self.loaded.diagnostics.last_mut().expect("just pushed")
    }

    fn load(mut self) {
        let start = schema::position(self.root);
        let map = match &self.root.data {
            YamlData::Mapping(map) => map,
            YamlData::Value(Scalar::Null) => return, // an empty document, e.g. a trailing `---`
            _ => {
                self.push(
                    Severity::Error,
                    start,
                    "a document must be a mapping with apiVersion and kind",
                );
                return;
            }
        };
        let field = |name: &str| {
            map.iter()
                .find(|(k, _)| matches!(&k.data, YamlData::Value(Scalar::String(s)) if s == name))
        };
        let text =
            |node: Option<(&MarkedYaml<'y>, &MarkedYaml<'y>)>| match node.map(|(_, v)| &v.data) {
                Some(YamlData::Value(Scalar::String(s))) => Some(s.to_string()),
                _ => None,
            };
        let (Some(api_version), Some(kind)) = (text(field("apiVersion")), text(field("kind")))
        else {
            self.push(
                Severity::Error,
                start,
                "apiVersion and kind are required strings",
            );
            return;
        };
        let metadata = field("metadata").map(|(_, v)| v);
        let meta_field = |name: &str| {
            metadata.and_then(|m| match &m.data {
                YamlData::Mapping(map) => map.iter().find(
                    |(k, _)| matches!(&k.data, YamlData::Value(Scalar::String(s)) if s == name),
                ),
                _ => None,
            })
        };
        let name = text(meta_field("name"));
        let namespace =
            text(meta_field("namespace")).unwrap_or_else(|| self.options.namespace.clone());
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        let display_name = name.clone().unwrap_or_else(|| "<unnamed>".to_owned());
        if group != "networking.istio.io" {
            if api_version == "v1" && kind == "Service" {
                let names = Names {
                    namespace: namespace.clone(),
                    cluster_domain: self.options.cluster_domain.clone(),
                };
                let meta = Meta {
                    kind: Kind::Service,
                    name: display_name.clone(),
                    namespace,
                    location: self.at(start),
                    positions: Arc::default(),
                };
                let host = names.fqdn(&meta.name);
                let service = model::KubernetesService { meta, host };
                self.loaded.config.kubernetes_services.push(service);
            }
            let message = format!(
                "skipped {api_version} {kind} {display_name}: not an Istio networking resource"
            );
            self.push(Severity::Info, start, message);
            return;
        }
        if !["v1alpha3", "v1beta1", "v1"].contains(&version) {
            let at = field("apiVersion").map_or(start, |(_, v)| schema::position(v));
            let message = format!(
                "apiVersion {api_version} is not served; use networking.istio.io/v1alpha3, v1beta1 or v1"
            );
            self.push(Severity::Error, at, message).resource =
                Some(format!("{kind}/{display_name}"));
            return;
        }
        let (kind, msg): (Kind, &'static Msg) = match kind.as_str() {
            "VirtualService" => (Kind::VirtualService, &schema::VIRTUAL_SERVICE),
            "DestinationRule" => (Kind::DestinationRule, &schema::DESTINATION_RULE),
            "ServiceEntry" => (Kind::ServiceEntry, &schema::SERVICE_ENTRY),
            "Gateway" => (Kind::Gateway, &schema::GATEWAY),
            other => {
                let message = format!(
                    "skipped {other} {display_name}: this kind is not read by this gateway"
                );
                self.push(Severity::Info, start, message);
                return;
            }
        };
        let resource = format!("{kind}/{display_name}");
        let mut ok = true;
        const TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
        for (key, _) in map {
            let written = match &key.data {
                YamlData::Value(Scalar::String(s)) => s.to_string(),
                _ => "?".to_owned(),
            };
            if TOP_LEVEL.contains(&written.as_str()) {
                continue;
            }
            let mut d = Diagnostic::new(
                Severity::Error,
                self.at(schema::position(key)),
                format!("unknown field `{written}`"),
            )
            .resource(&resource)
            .path(&written);
            if let Some(best) = TOP_LEVEL
                .iter()
                .find(|known| strsim::jaro_winkler(known, &written) >= 0.8)
            {
                d = d.hint(format!("did you mean `{best}`?"));
            }
            self.loaded.diagnostics.push(d);
            ok = false;
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            let d = self.push(Severity::Error, start, "metadata.name is required");
            d.resource = Some(resource);
            return;
        };
        let Some((_, spec)) = field("spec") else {
            let d = self.push(Severity::Error, start, "spec is required");
            d.resource = Some(resource);
            return;
        };
        let schema::Walked {
            value,
            mut positions,
            findings,
        } = schema::walk(spec, "spec", msg);
        positions.insert("", start);
        for (path, node) in [
            ("metadata.name", meta_field("name")),
            ("metadata.namespace", meta_field("namespace")),
        ] {
            if let Some((_, v)) = node {
                positions.insert(path, schema::position(v));
            }
        }
        for f in findings {
            ok &= f.severity != Severity::Error;
            let mut d = Diagnostic::new(f.severity, self.at(f.at), f.message)
                .resource(&resource)
                .path(f.path);
            d.hint = f.hint;
            self.loaded.diagnostics.push(d);
        }
        let meta = Meta {
            kind,
            name,
            namespace: namespace.clone(),
            location: self.at(start),
            positions: Arc::new(positions),
        };
        let names = Names {
            namespace,
            cluster_domain: self.options.cluster_domain.clone(),
        };
        let mut problems = Problems::default();
        let config = &mut self.loaded.config;
        let built = match kind {
            Kind::VirtualService => typed(value, &mut problems).map(|s| {
                config.virtual_services.push(model::virtual_service(
                    s,
                    meta.clone(),
                    &names,
                    &mut problems,
                ))
            }),
            Kind::DestinationRule => typed(value, &mut problems).map(|s| {
                config.destination_rules.push(model::destination_rule(
                    s,
                    meta.clone(),
                    &names,
                    &mut problems,
                ))
            }),
            Kind::ServiceEntry => typed(value, &mut problems).map(|s| {
                config
                    .service_entries
                    .push(model::service_entry(s, meta.clone(), &mut problems))
            }),
            Kind::Gateway => typed(value, &mut problems).map(|s| {
                config
                    .gateways
                    .push(model::gateway(s, meta.clone(), &mut problems))
            }),
            Kind::Service => None,
        };
        let mut failed = !ok || built.is_none();
        for (severity, path, rule) in problems.list {
            failed |= severity == Severity::Error;
            let d = Diagnostic::new(severity, meta.location_of(&path), rule)
                .resource(&resource)
                .path(path);
            self.loaded.diagnostics.push(d);
        }
        if failed && built.is_some() {
            // Keep only valid resources: drop the one just pushed.
            let config = &mut self.loaded.config;
            match kind {
                Kind::VirtualService => drop(config.virtual_services.pop()),
                Kind::DestinationRule => drop(config.destination_rules.pop()),
                Kind::ServiceEntry => drop(config.service_entries.pop()),
                Kind::Gateway => drop(config.gateways.pop()),
                Kind::Service => {}
            }
        }
    }
}

/// The supported part of a `spec` as its serde type; a type error names its field path.
fn typed<T: DeserializeOwned>(value: serde_json::Value, p: &mut Problems) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(spec) => Some(spec),
        Err(e) => {
            let path = match e.path().to_string().as_str() {
                "." => "spec".to_owned(),
                inner => format!("spec.{inner}"),
            };
            p.error(path, e.into_inner());
            None
        }
    }
}
