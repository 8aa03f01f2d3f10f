//! Files and directories of YAML → documents → validated resources and findings.
//!
//! Loading never stops at a bad document: every document is read, each problem becomes a
//! [`Diagnostic`], and only fully valid resources enter the [`Config`]. Only I/O failures (a
//! path that cannot be read) are a [`LoadError`], because then there is nothing to report on.

mod document;

use std::path::{Path, PathBuf};

use saphyr::{LoadableYamlNode, MarkedYaml};

use super::diagnostic::{Diagnostic, Location, Severity};
use super::model::Config;
use document::Document;

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
    #[error("cannot read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The files [`load_paths`] reads from `paths`: each file named, and every `*.yaml` and `*.yml`
/// under each folder named (recursively, in name order, hidden entries skipped).
pub fn config_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LoadError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files)?;
    }
    Ok(files)
}

/// Loads files and directories (recursively, `*.yaml` and `*.yml`, in name order).
pub fn load_paths(paths: &[PathBuf], options: &LoadOptions) -> Result<Loaded, LoadError> {
    let files = config_files(paths)?;
    let mut loaded = Loaded::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
            path: file.clone(),
            source,
        })?;
        let before = loaded.diagnostics.len();
        load_source(&file, &text, options, &mut loaded);
        let findings = loaded.diagnostics.len() - before;
        tracing::debug!(file = %file.display(), findings, "configuration file read");
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
        // Hidden entries are skipped: a Kubernetes ConfigMap volume holds each file twice more
        // under `..data/` and `..<timestamp>/`, reached through the visible symlinks.
        let hidden = entry
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
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
        Document {
            file,
            root: doc,
            options,
            loaded: &mut *loaded,
        }
        .load();
    }
}
