//! `docs/grafana-dashboard.json` asks only for what `/metrics` serves: every metric a query names
//! is a sample name the gateway's registry renders, and every label a query filters or groups by
//! is on that metric.
//!
//! Names and label sets come from a real render with one series per family, so renaming a
//! metric or a label fails here instead of leaving an empty panel. The PromQL reading is a
//! small scan (selectors, `by`/`without`/`on`/`ignoring` lists, identifiers), enough for the
//! queries a dashboard holds; `checker_catches_what_it_should` pins what it rejects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gateway::metrics::{
    CacheLabels, ClusterLabels, Metrics, ReloadResult, RequestLabels, SessionLabels,
    TlsRefreshLabels, render,
};
use prometheus_client::registry::Registry;
use regex::Regex;
use serde_json::Value;

/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// PromQL words that are neither metrics nor followed by `(`.
const KEYWORDS: [&str; 8] = [
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

/// What the gateway's `/metrics` serves.
struct Exported {
    /// Sample names, from the `# TYPE` lines and their type's suffixes.
    samples: BTreeSet<String>,
    /// Label names of each sample name that has a series in the render.
    labels: BTreeMap<String, BTreeSet<String>>,
}

impl Exported {
    /// Renders the gateway's registry with one series in every family.
    fn from_gateway() -> Self {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry);
        let (cluster, endpoint): (Arc<str>, Arc<str>) = ("c".into(), "10.0.0.1:80".into());
        let by_cluster = ClusterLabels {
            cluster: cluster.clone(),
        };
        m.requests
            .get_or_create(&RequestLabels {
                route: "vs/0".into(),
                cluster: cluster.clone(),
                endpoint: endpoint.clone(),
                code: 200,
            })
            .inc();
        m.upstream_latency.get_or_create(&by_cluster).observe(0.001);
        for family in [
            &m.retries,
            &m.hash_key_missing,
            &m.ejections,
            &m.table_rebuilds,
        ] {
            family.get_or_create(&by_cluster).inc();
        }
        for family in [&m.endpoints, &m.healthy_endpoints] {
            family.get_or_create(&by_cluster).set(1);
        }
        m.table_moved_share.get_or_create(&by_cluster).set(0.5);
        m.reloaded(ReloadResult::Success);
        m.sessions
            .get_or_create(&SessionLabels {
                cluster: cluster.clone(),
                event: "issued",
            })
            .inc();
        m.tls_refreshes
            .get_or_create(&TlsRefreshLabels {
                server: "default/edge servers[0]".into(),
                result: "rotated",
            })
            .inc();
        m.upstream_cache
            .get_or_create(&CacheLabels {
                cluster,
                endpoint,
                result: "hit",
            })
            .inc();
        Self::parse(&render(&registry))
    }

    /// Reads the Prometheus text format.
    fn parse(text: &str) -> Self {
        let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*""#).unwrap();
        let mut exported = Self {
            samples: BTreeSet::new(),
            labels: BTreeMap::new(),
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE <name> <type>");
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total"],
                    "gauge" => &[""],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    other => panic!("{name}: type {other} has no sample names here yet"),
                };
                for suffix in suffixes {
                    exported.samples.insert(format!("{name}{suffix}"));
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).expect("a sample line");
                let names = match (line.find('{'), line.rfind('}')) {
                    (Some(open), Some(close)) => label
                        .captures_iter(&line[open + 1..close])
                        .map(|c| c[1].to_owned())
                        .collect(),
                    _ => BTreeSet::new(),
                };
                exported.labels.insert(line[..end].to_owned(), names);
            }
        }
        exported
    }

    /// Checks that `metric` carries `label`.
    fn check_label(&self, place: &str, metric: &str, label: &str, errors: &mut Vec<String>) {
        if TARGET_LABELS.contains(&label) {
            return;
        }
        match self.labels.get(metric) {
            None if self.samples.contains(metric) => errors.push(format!(
                "{place}: no series of `{metric}` rendered to learn its labels; add one in Exported::from_gateway"
            )),
            // An unknown metric is reported once, by `check_expr`.
            None => {}
            Some(labels) if !labels.contains(label) => errors.push(format!(
                "{place}: `{metric}` has no label `{label}` (it has {labels:?})"
            )),
            Some(_) => {}
        }
    }
}

/// The pieces of PromQL the checks read.
struct Promql {
    string: Regex,
    range: Regex,
    variable: Regex,
    selector: Regex,
    matcher: Regex,
    grouping: Regex,
    token: Regex,
}

impl Promql {
    fn new() -> Self {
        let re = |s: &str| Regex::new(s).unwrap();
        Self {
            string: re(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"#),
            range: re(r"\[[^\]]*\]"),
            variable: re(r"\$\{[^}]*\}|\$[A-Za-z0-9_]+"),
            selector: re(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}"),
            matcher: re(r#"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"""#),
            grouping: re(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"),
            // Numbers and durations first, so `5m` or `1e3` yield no identifier.
            token: re(r"[0-9][0-9A-Za-z_.]*|[A-Za-z_:][A-Za-z0-9_:]*"),
        }
    }

    /// `expr` with what holds no names blanked: string contents, ranges, Grafana variables.
    fn blank(&self, expr: &str) -> String {
        let text = self.string.replace_all(expr, "\"\"");
        let text = self.range.replace_all(&text, "");
        self.variable.replace_all(&text, "").into_owned()
    }

    /// Metric names `expr` mentions.
    fn names(&self, expr: &str) -> Vec<String> {
        self.metrics(&self.selector.replace_all(&self.blank(expr), "$1"))
    }

    /// Metric names in blanked `text` without selectors: identifiers that are not functions,
    /// keywords or label lists.
    fn metrics(&self, text: &str) -> Vec<String> {
        let text = self.grouping.replace_all(text, "");
        self.token
            .find_iter(&text)
            .filter(|t| !t.as_str().starts_with(|c: char| c.is_ascii_digit()))
            .filter(|t| !text[t.end()..].trim_start().starts_with('('))
            .filter(|t| !KEYWORDS.contains(&t.as_str().to_ascii_lowercase().as_str()))
            .map(|t| t.as_str().to_owned())
            .collect()
    }

    /// Checks one PromQL expression; `place` names the panel and query in each error.
    fn check_expr(&self, place: &str, expr: &str, exported: &Exported, errors: &mut Vec<String>) {
        let text = self.blank(expr);
        for selector in self.selector.captures_iter(&text) {
            let Some(metric) = selector.get(1) else {
                errors.push(format!(
                    "{place}: a selector without a metric name in `{expr}`"
                ));
                continue;
            };
            for matcher in self.matcher.captures_iter(&selector[2]) {
                exported.check_label(place, metric.as_str(), &matcher[1], errors);
            }
        }
        let text = self.selector.replace_all(&text, "$1");
        let all = self.metrics(&text);
        if !all.iter().any(|m| m.starts_with("gateway_")) {
            errors.push(format!("{place}: `{expr}` names no gateway metric"));
        }
        for metric in &all {
            if !exported.samples.contains(metric) {
                errors.push(format!(
                    "{place}: `{metric}` is not a metric the gateway exports"
                ));
            }
        }
        for grouping in self.grouping.captures_iter(&text) {
            let whole = grouping.get(0).unwrap();
            let scope = match &grouping[1] {
                "by" | "without" => self.metrics(aggregated(&text, whole.start(), whole.end())),
                _ => all.clone(),
            };
            let labels = grouping[2]
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty());
            for label in labels {
                for metric in &scope {
                    exported.check_label(place, metric, label, errors);
                }
            }
        }
    }

    /// Checks a Grafana variable query: `label_values(<selector>, <label>)` or
    /// `query_result(<expr>)`.
    fn check_variable(
        &self,
        place: &str,
        query: &str,
        exported: &Exported,
        errors: &mut Vec<String>,
    ) {
        let query = query.trim();
        if let Some(inner) = call_argument(query, "label_values") {
            let Some((selector, label)) = inner.rsplit_once(',') else {
                errors.push(format!("{place}: `{query}` names no metric"));
                return;
            };
            self.check_expr(place, selector, exported, errors);
            for metric in self.names(selector) {
                exported.check_label(place, &metric, label.trim(), errors);
            }
        } else if let Some(inner) = call_argument(query, "query_result") {
            self.check_expr(place, inner, exported, errors);
        } else {
            errors.push(format!(
                "{place}: variable query `{query}` is not checked here"
            ));
        }
    }
}

/// `arg` of `name(arg)`, when `query` is that call.
fn call_argument<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .strip_prefix(name)?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')
}

/// The expression a `by (..)` at `start..end` groups: the parenthesised group after it
/// (`sum by (l) (x)`), else the one before it (`sum (x) by (l)`).
fn aggregated(text: &str, start: usize, end: usize) -> &str {
    let after = text[end..].trim_start();
    if after.starts_with('(') {
        let open = text.len() - after.len();
        return &text[open..matching(text, open, true)];
    }
    let close = text[..start].trim_end().len().saturating_sub(1);
    if text[close..].starts_with(')') {
        return &text[matching(text, close, false)..=close];
    }
    ""
}

/// Index of the bracket matching the one at `at`: just past it scanning forward, at it back.
fn matching(text: &str, at: usize, forward: bool) -> usize {
    let (open, close) = if forward { (b'(', b')') } else { (b')', b'(') };
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0, at);
    loop {
        if bytes[i] == open {
            depth += 1;
        } else if bytes[i] == close {
            depth -= 1;
        }
        if depth == 0 {
            return if forward { i + 1 } else { i };
        }
        i = if forward { i + 1 } else { i.wrapping_sub(1) };
        assert!(i < bytes.len(), "unbalanced parentheses in `{text}`");
    }
}

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana-dashboard.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every PromQL expression: (where it is, the expression).
fn expressions(dashboard: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let place = format!(
                "panel '{title}' query {}",
                target["refId"].as_str().unwrap_or("?")
            );
            out.push((place, target["expr"].as_str().unwrap_or("")));
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            let name = annotation["name"].as_str().unwrap_or("");
            out.push((format!("annotation '{name}'"), expr));
        }
    }
    out
}

/// Every variable query: (where it is, the query), both the stored query and its definition.
fn variable_queries(dashboard: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let place = format!("variable '{}'", variable["name"].as_str().unwrap_or(""));
        let query = &variable["query"];
        for text in [
            query.as_str(),
            query["query"].as_str(),
            variable["definition"].as_str(),
        ] {
            out.extend(text.map(|t| (place.clone(), t)));
        }
    }
    out
}

#[test]
fn every_query_names_exported_metrics_and_their_labels() {
    let (exported, promql, dashboard) = (Exported::from_gateway(), Promql::new(), dashboard());
    let exprs = expressions(&dashboard);
    assert!(exprs.len() >= 10, "only {} queries found", exprs.len());
    let mut errors = Vec::new();
    for (place, expr) in &exprs {
        promql.check_expr(place, expr, &exported, &mut errors);
    }
    let variables = variable_queries(&dashboard);
    assert!(!variables.is_empty(), "no variable queries found");
    for (place, query) in &variables {
        promql.check_variable(place, query, &exported, &mut errors);
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_exported_family_has_a_panel() {
    let (exported, promql, dashboard) = (Exported::from_gateway(), Promql::new(), dashboard());
    let used: BTreeSet<String> = expressions(&dashboard)
        .iter()
        .flat_map(|(_, expr)| promql.names(expr))
        .collect();
    let missing: Vec<_> = exported
        .samples
        .iter()
        .filter(|s| !s.ends_with("_sum") && !s.ends_with("_count"))
        .filter(|s| !used.contains(*s))
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

#[test]
fn every_panel_queries_through_the_imported_datasource() {
    let dashboard = dashboard();
    let input = dashboard["__inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"] == "DS_PROMETHEUS");
    assert_eq!(
        input.map(|i| &i["pluginId"]),
        Some(&Value::from("prometheus")),
        "no DS_PROMETHEUS input"
    );
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        assert!(
            ids.insert(panel["id"].as_u64()),
            "panel '{title}': id {} used twice",
            panel["id"]
        );
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel '{title}' has no query");
        for source in targets
            .iter()
            .map(|t| &t["datasource"])
            .chain([&panel["datasource"]])
        {
            assert_eq!(
                source["uid"], "${DS_PROMETHEUS}",
                "panel '{title}': datasource {source}"
            );
        }
        let unit = &panel["fieldConfig"]["defaults"]["unit"];
        assert!(unit.is_string(), "panel '{title}' has no unit");
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        assert_eq!(
            variable["datasource"]["uid"], "${DS_PROMETHEUS}",
            "variable {}",
            variable["name"]
        );
    }
}

#[test]
fn checker_catches_what_it_should() {
    let (exported, promql) = (Exported::from_gateway(), Promql::new());
    let errors = |expr: &str| {
        let mut errors = Vec::new();
        promql.check_expr("panel 'T' query A", expr, &exported, &mut errors);
        errors
    };
    let fine = [
        r#"sum by (endpoint, result) (rate(gateway_upstream_cache_total{cluster=~"$cluster"}[$__rate_interval]))"#,
        "histogram_quantile(0.99, sum(rate(gateway_upstream_latency_seconds_bucket[5m])) by (le))",
        "min by (instance) (gateway_config_last_reload_ok) offset 1h",
        r#"gateway_endpoints{cluster="a{b}"} - on (cluster) gateway_healthy_endpoints"#,
    ];
    for expr in fine {
        assert_eq!(errors(expr), Vec::<String>::new(), "{expr}");
    }
    let bad = [
        (
            "rate(gateway_request_total[5m])",
            "`gateway_request_total` is not",
        ),
        (
            "rate(gateway_requests_total[5m]) / rate(http_requests_total[5m])",
            "`http_requests_total` is not",
        ),
        (
            "gateway_upstream_latency_seconds",
            "`gateway_upstream_latency_seconds` is not",
        ),
        ("up", "names no gateway metric"),
        (r#"gateway_requests_total{pod="x"}"#, "no label `pod`"),
        (
            "sum by (le) (rate(gateway_requests_total[5m]))",
            "no label `le`",
        ),
        (
            "sum(rate(gateway_sessions_total[5m])) by (result)",
            "no label `result`",
        ),
        (
            "gateway_endpoints - ignoring (endpoint) gateway_healthy_endpoints",
            "no label `endpoint`",
        ),
        (
            r#"{__name__="gateway_endpoints"}"#,
            "a selector without a metric name",
        ),
    ];
    for (expr, wanted) in bad {
        let found = errors(expr);
        assert!(
            found
                .iter()
                .any(|e| e.contains(wanted) && e.starts_with("panel 'T'")),
            "{expr}: {found:?}"
        );
    }
    let mut errors = Vec::new();
    promql.check_variable(
        "variable 'c'",
        "label_values(gateway_endpoints, endpoint)",
        &exported,
        &mut errors,
    );
    assert!(
        errors.iter().any(|e| e.contains("no label `endpoint`")),
        "{errors:?}"
    );
}
