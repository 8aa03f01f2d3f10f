//! `headers` of a VirtualService route and of its destinations: set, add and remove, with
//! names and values parsed once when the snapshot is built, applied by the request path.
//!
//! Parsed off the request path; applying them allocates nothing new but the values' clones.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::model::{HeaderOperations, HeaderRules};

/// A header edit that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// Not a valid header name.
    #[error("invalid header name {0:?}")]
    Name(String),
    /// Not a valid value for the header named.
    #[error("invalid value for {0}")]
    Value(String),
}

/// Request and response header edits, parsed once.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    /// Applied to the request sent upstream.
    pub request: HeaderEdits,
    /// Applied to the response sent to the client.
    pub response: HeaderEdits,
}

impl Edits {
    /// Parses a `headers` block.
    pub fn compile(rules: &HeaderRules) -> Result<Self, EditError> {
        Ok(Self {
            request: HeaderEdits::compile(&rules.request)?,
            response: HeaderEdits::compile(&rules.response)?,
        })
    }
}

/// A VirtualService `headers.request` or `headers.response` block, parsed once.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderEdits {
    /// Parses names and values; an invalid one is an error naming it.
    pub fn compile(ops: &HeaderOperations) -> Result<Self, EditError> {
        let name = |n: &str| {
            HeaderName::from_bytes(n.as_bytes()).map_err(|_| EditError::Name(n.to_owned()))
        };
        let pair = |(n, v): &(String, String)| {
            let value = HeaderValue::from_str(v).map_err(|_| EditError::Value(n.to_owned()))?;
            Ok::<_, EditError>((name(n)?, value))
        };
        Ok(Self {
            set: ops.set.iter().map(pair).collect::<Result<_, _>>()?,
            add: ops.add.iter().map(pair).collect::<Result<_, _>>()?,
            remove: ops
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Applies set, then add, then remove (Envoy's order).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
        for name in &self.remove {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_set_add_remove() {
        let ops = HeaderOperations {
            set: vec![("x-a".into(), "1".into())],
            add: vec![("x-b".into(), "2".into())],
            remove: vec!["x-c".into()],
        };
        let edits = HeaderEdits::compile(&ops).unwrap();
        let mut h: HeaderMap = [("x-a", "0"), ("x-b", "1"), ("x-c", "gone")]
            .into_iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect();
        edits.apply(&mut h);
        assert_eq!(h.get("x-a").unwrap(), "1");
        assert_eq!(h.get_all("x-b").iter().count(), 2);
        assert!(h.get("x-c").is_none());
        let bad = HeaderOperations {
            set: vec![("bad name".into(), "1".into())],
            ..Default::default()
        };
        assert!(HeaderEdits::compile(&bad).is_err());
    }
}
