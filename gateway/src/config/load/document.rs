//! One YAML document → at most one validated resource, plus its findings.
//!
//! The steps: identify the document (`apiVersion`, `kind`, `metadata`), skip what is not an
//! Istio networking resource, check the top-level fields, walk `spec` against the schema, read
//! the supported part into its spec type, and convert that into the model. A resource with any
//! error is reported but not added, so the data path only ever sees valid configuration.

use std::sync::Arc;

use saphyr::{AnnotatedMapping, MarkedYaml, Scalar, YamlData};
use serde::de::DeserializeOwned;

use super::{LoadOptions, Loaded};
use crate::config::diagnostic::{Diagnostic, Location, Severity};
use crate::config::model::{
    self, DestinationRule, Gateway, Kind, KubernetesService, Labels, Meta, Names, Problems,
    ServiceEntry, VirtualService,
};
use crate::config::schema::{self, Msg};

const TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];
const SERVED_VERSIONS: [&str; 3] = ["v1alpha3", "v1beta1", "v1"];

pub(super) struct Document<'a, 'y> {
    pub file: &'a std::path::Path,
    pub root: &'a MarkedYaml<'y>,
    pub options: &'a LoadOptions,
    pub loaded: &'a mut Loaded,
}

/// What a document says it is.
struct Header {
    api_version: String,
    kind: String,
    name: Option<String>,
    namespace: String,
    /// `metadata.labels` and `metadata.annotations`: their string values (Kubernetes allows
    /// no others).
    labels: Labels,
    annotations: Labels,
}

/// A valid resource, ready to join the configuration.
enum Resource {
    Gateway(Gateway),
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    ServiceEntry(ServiceEntry),
}

type Mapping<'a, 'y> = &'a AnnotatedMapping<'y, MarkedYaml<'y>>;

/// The value under string key `name`, with its key.
fn get<'a, 'y>(
    map: Mapping<'a, 'y>,
    name: &str,
) -> Option<(&'a MarkedYaml<'y>, &'a MarkedYaml<'y>)> {
    map.iter()
        .find(|(k, _)| matches!(&k.data, YamlData::Value(Scalar::String(s)) if s == name))
}

fn string(node: Option<(&MarkedYaml<'_>, &MarkedYaml<'_>)>) -> Option<String> {
    match node.map(|(_, v)| &v.data) {
        Some(YamlData::Value(Scalar::String(s))) => Some(s.to_string()),
        _ => None,
    }
}

fn metadata<'a, 'y>(map: Mapping<'a, 'y>) -> Option<Mapping<'a, 'y>> {
    match get(map, "metadata").map(|(_, v)| &v.data) {
        Some(YamlData::Mapping(m)) => Some(m),
        _ => None,
    }
}

/// The string entries of `metadata.<field>` (labels, annotations).
fn string_map(map: Mapping<'_, '_>, field: &str) -> Labels {
    let Some(YamlData::Mapping(entries)) = metadata(map)
        .and_then(|m| get(m, field))
        .map(|(_, v)| &v.data)
    else {
        return Labels::new();
    };
    entries
        .iter()
        .filter_map(|(k, v)| match (&k.data, &v.data) {
            (YamlData::Value(Scalar::String(k)), YamlData::Value(Scalar::String(v))) => {
                Some((k.to_string(), v.to_string()))
            }
            _ => None,
        })
        .collect()
}

/// Where each entry of `metadata.<field>` is written, as `metadata.<field>.<key>`.
fn map_positions(map: Mapping<'_, '_>, field: &str, positions: &mut schema::Positions) {
    if let Some(YamlData::Mapping(entries)) = metadata(map)
        .and_then(|m| get(m, field))
        .map(|(_, v)| &v.data)
    {
        for (k, v) in entries {
            if let YamlData::Value(Scalar::String(k)) = &k.data {
                positions.insert(&format!("metadata.{field}.{k}"), schema::position(v));
            }
        }
    }
}

impl<'y> Document<'_, 'y> {
    fn at(&self, (line, column): (usize, usize)) -> Location {
        Location {
            file: self.file.to_owned(),
            line,
            column,
        }
    }

    fn report(
        &mut self,
        severity: Severity,
        at: (usize, usize),
        resource: Option<&str>,
        message: String,
    ) {
        let mut d = Diagnostic::new(severity, self.at(at), message);
        d.resource = resource.map(str::to_owned);
        self.loaded.diagnostics.push(d);
    }

    pub(super) fn load(mut self) {
        let start = schema::position(self.root);
        let map = match &self.root.data {
            YamlData::Mapping(map) => map,
            YamlData::Value(Scalar::Null) => return, // an empty document, e.g. a trailing `---`
            _ => {
                let message = "a document must be a mapping with apiVersion and kind".to_owned();
                return self.report(Severity::Error, start, None, message);
            }
        };
        let Some(header) = self.header(map) else {
            let message = "apiVersion and kind are required strings".to_owned();
            return self.report(Severity::Error, start, None, message);
        };
        let Some((kind, msg)) = self.istio_kind(map, &header) else {
            return;
        };
        let resource = format!("{kind}/{}", header.name.as_deref().unwrap_or("<unnamed>"));
        let top_level_ok = self.top_level_fields(map, &resource);
        let Some(name) = header.name.filter(|n| !n.is_empty()) else {
            let message = "metadata.name is required".to_owned();
            return self.report(Severity::Error, start, Some(&resource), message);
        };
        let Some((_, spec)) = get(map, "spec") else {
            return self.report(
                Severity::Error,
                start,
                Some(&resource),
                "spec is required".to_owned(),
            );
        };
        let walked = schema::walk(spec, "spec", msg);
        let mut positions = walked.positions;
        positions.insert("", start);
        for field in ["name", "namespace"] {
            if let Some((_, v)) = metadata(map).and_then(|m| get(m, field)) {
                positions.insert(&format!("metadata.{field}"), schema::position(v));
            }
        }
        map_positions(map, "labels", &mut positions);
        map_positions(map, "annotations", &mut positions);
        let mut ok = top_level_ok;
        for f in walked.findings {
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
            namespace: header.namespace.clone(),
            labels: header.labels,
            annotations: header.annotations,
            location: self.at(start),
            positions: Arc::new(positions),
        };
        let names = Names {
            namespace: header.namespace,
            cluster_domain: self.options.cluster_domain.clone(),
        };
        let mut problems = Problems::default();
        let built = build(walked.value, meta.clone(), &names, &mut problems);
        for (severity, path, rule) in problems.list {
            ok &= severity != Severity::Error;
            let d = Diagnostic::new(severity, meta.location_of(&path), rule)
                .resource(&resource)
                .path(path);
            self.loaded.diagnostics.push(d);
        }
        if let (true, Some(resource)) = (ok, built) {
            let config = &mut self.loaded.config;
            match resource {
                Resource::Gateway(r) => config.gateways.push(r),
                Resource::VirtualService(r) => config.virtual_services.push(r),
                Resource::DestinationRule(r) => config.destination_rules.push(r),
                Resource::ServiceEntry(r) => config.service_entries.push(r),
            }
        }
    }

    fn header(&self, map: Mapping<'_, 'y>) -> Option<Header> {
        let api_version = string(get(map, "apiVersion"))?;
        let kind = string(get(map, "kind"))?;
        let meta = |field: &str| metadata(map).and_then(|m| string(get(m, field)));
        Some(Header {
            api_version,
            kind,
            name: meta("name"),
            namespace: meta("namespace").unwrap_or_else(|| self.options.namespace.clone()),
            labels: string_map(map, "labels"),
            annotations: string_map(map, "annotations"),
        })
    }

    /// The kind and schema of an Istio networking document this gateway reads; anything else is
    /// reported (info for foreign kinds, error for an unserved version) and yields `None`.
    fn istio_kind(&mut self, map: Mapping<'_, 'y>, h: &Header) -> Option<(Kind, &'static Msg)> {
        let start = schema::position(self.root);
        let name = h.name.as_deref().unwrap_or("<unnamed>");
        let (group, version) = h
            .api_version
            .split_once('/')
            .unwrap_or(("", &h.api_version));
        if group != "networking.istio.io" {
            if h.api_version == "v1" && h.kind == "Service" {
                self.kubernetes_service(map, h);
            }
            let message = format!(
                "skipped {} {} {name}: not an Istio networking resource",
                h.api_version, h.kind
            );
            self.report(Severity::Info, start, None, message);
            return None;
        }
        if !SERVED_VERSIONS.contains(&version) {
            let at = get(map, "apiVersion").map_or(start, |(_, v)| schema::position(v));
            let message = format!(
                "apiVersion {} is not served; use networking.istio.io/v1alpha3, v1beta1 or v1",
                h.api_version
            );
            let resource = format!("{}/{name}", h.kind);
            self.report(Severity::Error, at, Some(&resource), message);
            return None;
        }
        let found = match h.kind.as_str() {
            "VirtualService" => (Kind::VirtualService, &schema::VIRTUAL_SERVICE),
            "DestinationRule" => (Kind::DestinationRule, &schema::DESTINATION_RULE),
            "ServiceEntry" => (Kind::ServiceEntry, &schema::SERVICE_ENTRY),
            "Gateway" => (Kind::Gateway, &schema::GATEWAY),
            other => {
                let message =
                    format!("skipped {other} {name}: this kind is not read by this gateway");
                self.report(Severity::Info, start, None, message);
                return None;
            }
        };
        Some(found)
    }

    /// Keeps a Kubernetes Service's name: `gateway check` matches DestinationRule hosts to it.
    fn kubernetes_service(&mut self, map: Mapping<'_, 'y>, h: &Header) {
        let names = Names {
            namespace: h.namespace.clone(),
            cluster_domain: self.options.cluster_domain.clone(),
        };
        let name = h.name.clone().unwrap_or_default();
        let mut positions = schema::Positions::default();
        positions.insert("", schema::position(self.root));
        map_positions(map, "labels", &mut positions);
        map_positions(map, "annotations", &mut positions);
        let mut service = KubernetesService {
            host: names.fqdn(&name),
            session: None,
            meta: Meta {
                kind: Kind::Service,
                name,
                namespace: h.namespace.clone(),
                labels: h.labels.clone(),
                annotations: h.annotations.clone(),
                location: self.at(schema::position(self.root)),
                positions: Arc::new(positions),
            },
        };
        let mut problems = Problems::default();
        service.session = model::session_policy(&service.meta, &mut problems);
        let resource = service.meta.resource();
        for (severity, path, rule) in problems.list {
            let d = Diagnostic::new(severity, service.meta.location_of(&path), rule)
                .resource(&resource)
                .path(path);
            self.loaded.diagnostics.push(d);
        }
        self.loaded.config.kubernetes_services.push(service);
    }

    /// Reports top-level fields other than apiVersion, kind, metadata, spec and status (which
    /// is written by the cluster, not the user, and ignored). True when there were none.
    fn top_level_fields(&mut self, map: Mapping<'_, 'y>, resource: &str) -> bool {
        let mut ok = true;
        for (key, _) in map {
            let written = match &key.data {
                YamlData::Value(Scalar::String(s)) => s.to_string(),
                _ => "?".to_owned(),
            };
            if TOP_LEVEL.contains(&written.as_str()) {
                continue;
            }
            let message = format!("unknown field `{written}`");
            let mut d = Diagnostic::new(Severity::Error, self.at(schema::position(key)), message)
                .resource(resource)
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
        ok
    }
}

/// The spec's supported part → its serde type → the model.
fn build(
    value: serde_json::Value,
    meta: Meta,
    names: &Names,
    p: &mut Problems,
) -> Option<Resource> {
    Some(match meta.kind {
        Kind::VirtualService => {
            Resource::VirtualService(model::virtual_service(typed(value, p)?, meta, names, p))
        }
        Kind::DestinationRule => {
            Resource::DestinationRule(model::destination_rule(typed(value, p)?, meta, names, p))
        }
        Kind::ServiceEntry => {
            Resource::ServiceEntry(model::service_entry(typed(value, p)?, meta, p))
        }
        Kind::Gateway => Resource::Gateway(model::gateway(typed(value, p)?, meta, p)),
        Kind::Service => return None,
    })
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
