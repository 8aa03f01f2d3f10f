//! Findings about a configuration: what the loader and `gateway check` tell the user.
//!
//! One type for every finding, from a YAML syntax error to an analysis warning, so the CLI prints
//! them all the same way (`file:line:col: severity: Kind/name: field.path: message`) and a later
//! admin endpoint can serve them as JSON.
//!
//! Data only: it may not import the rest of `config`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How bad a finding is; `gateway check` exits 1 when any is `Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something the user may want to know (a skipped non-Istio document).
    Info,
    /// Valid configuration that does not do what its author most likely meant.
    Warning,
    /// Invalid configuration: Istio would reject it, or this gateway cannot honour it.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// A position in a YAML file; line and column are 1-based, as editors show them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// The file as it was named on the command line (or found in a named directory).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Location {
    /// The start of `file`, for findings about a whole file.
    pub fn file_start(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One finding, with everything needed to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// How bad it is.
    pub severity: Severity,
    /// Where it is.
    pub location: Location,
    /// The document it is about, as `Kind/name`, when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The field path inside the document, e.g. `spec.trafficPolicy.loadBalancer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The rule broken or the fact observed.
    pub message: String,
    /// A suggested fix, e.g. `did you mean sticky-svc.default.svc.cluster.local?`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A finding at `location` with no resource, path or hint yet.
    pub fn new(severity: Severity, location: Location, message: impl Into<String>) -> Self {
        Self {
            severity,
            location,
            resource: None,
            path: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Names the document the finding is about.
    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Names the field path the finding is about.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Adds a suggested fix.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.location, self.severity)?;
        if let Some(resource) = &self.resource {
            write!(f, "{resource}: ")?;
        }
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// The candidate closest to `name`, if close enough to be a typo (for a "did you mean" hint).
pub(crate) fn near_miss<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::normalized_damerau_levenshtein(name, c), c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// True when any finding is an error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| d.severity == Severity::Error)
}
