"""Self-test of scripts/k8s_consistency.py: each broken rendering must fail the check it names.

Run as `scripts/k8s_consistency.py --self-test`, which passes itself in as `ck` (so this module
never imports the script a second time under another name).
"""

import copy
import tempfile
from pathlib import Path


def _container(ck, docs, name):
    return ck.pod_spec(ck.find(docs, "Deployment", name))["containers"][0]


def _destination_rule(istio_docs):
    return next(d for d in istio_docs if d["kind"] == "DestinationRule")


def _policy_rules(ck, docs):
    return ck.find(docs, "NetworkPolicy", "gateway")["spec"]["ingress"]


def _admin_rule(ck, docs):
    return next(r for r in _policy_rules(ck, docs) if r.get("from"))


def _admin_from_namespace_only(ck, docs):
    _admin_rule(ck, docs)["from"] = [{"podSelector": {}}]


def _close_proxy_port(ck, docs):
    rules = _policy_rules(ck, docs)
    rules[:] = [r for r in rules if r.get("from")]


def _close_tls_port(ck, docs):
    for rule in _policy_rules(ck, docs):
        if not rule.get("from"):
            rule["ports"] = [p for p in rule["ports"] if p["port"] != "https"]


def _gateway_volume(ck, docs, name):
    return next(v for v in ck.pod_spec(ck.find(docs, "Deployment", "gateway"))["volumes"]
                if v["name"] == name)


def _drop_https_service_port(ck, docs):
    ports = ck.find(docs, "Service", "gateway")["spec"]["ports"]
    ports[:] = [p for p in ports if p["port"] != 443]


# (what a person could get wrong, how to break the rendering that way, the check that must fail)
BREAKAGES = [
    ("gateway readiness probe on the serving port 8080 instead of admin 15000",
     lambda ck, d, i: _container(ck, d, "gateway")["readinessProbe"]["httpGet"]
     .update(port=8080),
     "gateway: readinessProbe hits port 15000"),
    ("liveness probe on a path sticky-svc does not serve",
     lambda ck, d, i: _container(ck, d, "sticky-svc")["livenessProbe"]["httpGet"]
     .update(path="/health"),
     "sticky-svc: livenessProbe path /healthz is served by the binary"),
    ("ConfigMap renamed (a hash suffix) but the Deployment still mounts the old name",
     lambda ck, d, i: ck.find(d, "ConfigMap", "gateway-istio")["metadata"]
     .update(name="gateway-istio-5f8c2b"),
     "gateway: mounts the ConfigMap kustomize generates (same rendered name)"),
    ("sticky-svc Service selector that matches no pod",
     lambda ck, d, i: ck.find(d, "Service", "sticky-svc")["spec"]
     .update(selector={"app": "sticky"}),
     "sticky-svc Service selects the sticky-svc pods"),
    ("sticky-svc Service given a ClusterIP",
     lambda ck, d, i: ck.find(d, "Service", "sticky-svc")["spec"].update(clusterIP="10.96.0.10"),
     "sticky-svc Service is headless (clusterIP: None): DNS returns every ready pod"),
    ("the article's DestinationRule host typo (sticky-service)",
     lambda ck, d, i: _destination_rule(i)["spec"]
     .update(host="sticky-service.default.svc.cluster.local"),
     ("istio: DestinationRule host is the headless Service's name "
      "sticky-svc.default.svc.cluster.local")),
    ("an image tag that drifted from the contract",
     lambda ck, d, i: _container(ck, d, "sticky-svc").update(image="sticky/sticky-svc:0.2.0"),
     "sticky-svc: image is sticky/sticky-svc:0.1.0"),
    ("a grace period shorter than a cold call",
     lambda ck, d, i: ck.pod_spec(ck.find(d, "Deployment", "sticky-svc"))
     .update(terminationGracePeriodSeconds=5),
     "sticky-svc: terminationGracePeriodSeconds covers a cold call plus the drain"),
    ("the NetworkPolicy's admin rule on another port than the admin listener's",
     lambda ck, d, i: _admin_rule(ck, d).update(ports=[{"port": 15001, "protocol": "TCP"}]),
     "gateway NetworkPolicy: admin port 15000 admitted from this namespace and named namespaces only"),
    ("the admin port opened to every source",
     lambda ck, d, i: _admin_rule(ck, d).pop("from"),
     "gateway NetworkPolicy: admin port 15000 admitted from this namespace and named namespaces only"),
    ("the admin port opened to every namespace (an empty namespaceSelector)",
     lambda ck, d, i: _admin_rule(ck, d)["from"].append({"namespaceSelector": {}}),
     "gateway NetworkPolicy: admin port 15000 admitted from this namespace and named namespaces only"),
    ("no namespace left for Prometheus to scrape from",
     lambda ck, d, i: _admin_from_namespace_only(ck, d),
     "gateway NetworkPolicy: Prometheus's namespace may scrape admin port 15000"),
    ("the proxy port closed by the NetworkPolicy",
     lambda ck, d, i: _close_proxy_port(ck, d),
     "gateway NetworkPolicy: the proxy port 8080 is open to every client"),
    ("the gateway Service without port 443",
     lambda ck, d, i: _drop_https_service_port(ck, d),
     "gateway Service: port 443 -> the TLS listener 8443 (GATEWAY_LISTEN_TLS), and nothing else"),
    ("the Service's 443 sent to the plain proxy port",
     lambda ck, d, i: next(p for p in ck.find(d, "Service", "gateway")["spec"]["ports"]
                           if p["port"] == 443).update(targetPort="http"),
     "gateway Service: port 443 -> the TLS listener 8443 (GATEWAY_LISTEN_TLS), and nothing else"),
    ("the TLS port closed by the NetworkPolicy",
     lambda ck, d, i: _close_tls_port(ck, d),
     "gateway NetworkPolicy: the TLS port 8443 is open to every client"),
    ("the TLS Secret required: a hand-run apply without it would never start",
     lambda ck, d, i: _gateway_volume(ck, d, "sticky-cert")["secret"].update(optional=False),
     "gateway: the Secret sticky-cert is mounted at GATEWAY_CREDENTIALS_DIR/sticky-cert, optional"),
    ("the TLS Secret mounted where credentialName does not look",
     lambda ck, d, i: next(e for e in _container(ck, d, "gateway")["env"]
                           if e["name"] == "GATEWAY_CREDENTIALS_DIR").update(value="/etc/sticky/certs"),
     "gateway: the Secret sticky-cert is mounted at GATEWAY_CREDENTIALS_DIR/sticky-cert, optional"),
    ("the HTTPS Gateway's ConfigMap drifted from k8s/tls/",
     lambda ck, d, i: ck.find(d, "ConfigMap", "gateway-tls")["data"].update(
         {"gateway.yaml": "kind: Gateway\n"}),
     "gateway: a config folder is the ConfigMap gateway-tls, every k8s/tls/*.yaml unchanged"),
    ("the gateway running as root",
     lambda ck, d, i: ck.pod_spec(ck.find(d, "Deployment", "gateway"))["securityContext"]
     .update(runAsUser=0),
     "gateway: pod runs as non-root uid 65532 with seccomp RuntimeDefault"),
]

# A compose.yaml as issue 7 describes it, to exercise the compose hook before the real one exists.
GOOD_COMPOSE = """
services:
  sticky-svc:
    image: ${STICKY_SVC_IMAGE:-sticky/sticky-svc:0.1.0}
    networks:
      default:
        aliases: [sticky-svc.default.svc.cluster.local]
  gateway:
    image: sticky/gateway:0.1.0
    volumes: ["./k8s/istio:/etc/sticky/istio:ro", "./k8s/tls:/etc/sticky/tls:ro"]
"""
COMPOSE_BREAKAGES = [
    ("compose without the Kubernetes DNS alias",
     GOOD_COMPOSE.replace("sticky-svc.default.svc.cluster.local", "sticky"),
     ("compose: sticky-svc answers to sticky-svc.default.svc.cluster.local, "
      "the host of the Istio YAML")),
    ("compose mounting another config directory",
     GOOD_COMPOSE.replace("./k8s/istio:", "./config:"),
     "compose: the gateway mounts k8s/istio/, the ConfigMap's files"),
    ("compose without the HTTPS Gateway",
     GOOD_COMPOSE.replace(', "./k8s/tls:/etc/sticky/tls:ro"', ""),
     "compose: the gateway mounts k8s/tls/, the HTTPS Gateway"),
]


def _absolute(ck, text):
    """The sample compose file with its k8s/ folders by absolute path, so it may live anywhere."""
    return text.replace("./k8s/istio", str(ck.ISTIO)).replace("./k8s/tls", str(ck.TLS))


def self_test(rendered_text, ck):
    docs, kustomization, sources, istio_docs, tls_docs = ck.inputs(rendered_text)
    t = ck.Checks()
    base = ck.run_all(docs, kustomization, sources, istio_docs, tls_docs, quiet=True)
    t.check(f"the real rendering passes ({base.passed} checks)", not base.failed,
            f"failing: {base.failed}")
    for what, mutate, expected in BREAKAGES:
        broken_docs, broken_istio = copy.deepcopy(docs), copy.deepcopy(istio_docs)
        mutate(ck, broken_docs, broken_istio)
        got = ck.run_all(broken_docs, kustomization, sources, broken_istio, tls_docs, quiet=True)
        t.check(f"caught: {what}", expected in got.failed,
                f"expected {expected!r} to fail, failures were {got.failed}")
    # A crate whose admin routes were renamed: the probes must be caught pointing at nothing.
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "src").mkdir()
        (Path(tmp) / "src" / "admin.rs").write_text('route("/healthz", ..).route("/ready", ..)')
        real, ck.CRATES["gateway"] = ck.CRATES["gateway"], Path(tmp)
        try:
            got = ck.run_all(docs, kustomization, sources, istio_docs, tls_docs, quiet=True)
        finally:
            ck.CRATES["gateway"] = real
        expected = "gateway: readinessProbe path is a route in its source"
        t.check("caught: a probe path the gateway's source no longer declares",
                expected in got.failed, f"expected {expected!r} to fail, failures were {got.failed}")
    with tempfile.TemporaryDirectory() as tmp:
        compose = Path(tmp) / "compose.yaml"
        compose.write_text(_absolute(ck, GOOD_COMPOSE))
        got = ck.run_all(docs, kustomization, sources, istio_docs, tls_docs, quiet=True,
                         compose=compose)
        t.check("compose hook passes a compose.yaml that matches k8s/",
                not got.failed and not any(s.startswith("compose") for s in got.skipped),
                f"failing {got.failed}, skipped {got.skipped}")
        for what, text, expected in COMPOSE_BREAKAGES:
            compose.write_text(_absolute(ck, text))
            got = ck.run_all(docs, kustomization, sources, istio_docs, tls_docs, quiet=True,
                             compose=compose)
            t.check(f"caught: {what}", expected in got.failed,
                    f"expected {expected!r} to fail, failures were {got.failed}")
    return t
