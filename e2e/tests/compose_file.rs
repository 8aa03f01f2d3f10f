//! compose.yaml agrees with the images, the binaries and the Istio YAML it runs (no Docker
//! needed): a renamed alias, image tag, port or health check fails here, not at `just up`.

use std::path::Path;

use e2e::{IMAGE_TAG, SERVICE_HOST, workspace_root};
use saphyr::{LoadableYamlNode, Yaml};

fn load(path: &Path) -> Yaml<'static> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Leaked: a handful of small files per test run, and the nodes may then borrow the text.
    let text: &'static str = Box::leak(text.into_boxed_str());
    Yaml::load_from_str(text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .remove(0)
}

/// `doc[a][b]...` as a string (numbers and booleans written as YAML writes them).
fn text<'a>(doc: &'a Yaml<'static>, path: &[&str]) -> Option<&'a str> {
    let mut node = doc;
    for key in path {
        node = node.as_mapping_get(key)?;
    }
    node.as_str()
}

fn strings(doc: &Yaml<'static>, path: &[&str]) -> Vec<String> {
    let mut node = doc;
    for key in path {
        match node.as_mapping_get(key) {
            Some(next) => node = next,
            None => return Vec::new(),
        }
    }
    node.as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn compose() -> Yaml<'static> {
    load(&workspace_root().join("compose.yaml"))
}

#[test]
fn images_carry_the_workspace_version_and_have_a_dockerfile() {
    let compose = compose();
    for service in ["sticky-svc", "gateway", "loadtest"] {
        let image = text(&compose, &["services", service, "image"]).expect("image");
        assert_eq!(image, format!("sticky/{service}:{IMAGE_TAG}"));
        let dockerfile = workspace_root().join(format!("docker/{service}.Dockerfile"));
        let body = std::fs::read_to_string(&dockerfile).expect("a Dockerfile per image");
        assert!(body.contains("FROM scratch"), "{}", dockerfile.display());
        assert!(
            body.contains("USER 65532:65532"),
            "{}",
            dockerfile.display()
        );
        assert!(
            body.contains(&format!("ENTRYPOINT [\"/{service}\"]")),
            "{}",
            dockerfile.display()
        );
    }
}

#[test]
fn replicas_carry_the_host_the_istio_yaml_routes_to() {
    let compose = compose();
    let aliases = strings(
        &compose,
        &["services", "sticky-svc", "networks", "default", "aliases"],
    );
    assert_eq!(aliases, [SERVICE_HOST]);
    let vs = load(&workspace_root().join("k8s/istio/virtual-service.yaml"));
    let route = &vs["spec"]["http"][0]["route"][0]["destination"];
    assert_eq!(route["host"].as_str(), Some(SERVICE_HOST));
    assert_eq!(route["port"]["number"].as_integer(), Some(8080));
    let dr = load(&workspace_root().join("k8s/istio/destination-rule.yaml"));
    assert_eq!(dr["spec"]["host"].as_str(), Some(SERVICE_HOST));
    let listen = text(
        &compose,
        &["services", "sticky-svc", "environment", "LISTEN"],
    );
    assert_eq!(listen, Some("0.0.0.0:8080"), "the port the route names");
}

#[test]
fn the_gateway_reads_the_kubernetes_istio_yaml() {
    let compose = compose();
    let volumes = strings(&compose, &["services", "gateway", "volumes"]);
    let config = text(
        &compose,
        &["services", "gateway", "environment", "GATEWAY_CONFIG"],
    );
    assert_eq!(config, Some("/etc/sticky/istio,/etc/sticky/tls"));
    assert_eq!(
        volumes,
        [
            "./k8s/istio:/etc/sticky/istio:ro",
            "./k8s/tls:/etc/sticky/tls:ro"
        ]
    );
    let ports = strings(&compose, &["services", "gateway", "ports"]);
    assert!(
        ports.contains(&"${GATEWAY_PORT:-80}:8080".to_owned()),
        "{ports:?}"
    );
    let listen = text(
        &compose,
        &["services", "gateway", "environment", "GATEWAY_LISTEN"],
    );
    assert_eq!(listen, Some("0.0.0.0:8080"));
}

/// A bind mount in the long syntax: (source, target, read_only).
fn bind<'a>(volume: &'a Yaml<'static>) -> Option<(&'a str, &'a str, bool)> {
    let get = |key| volume.as_mapping_get(key);
    (get("type")?.as_str()? == "bind").then_some((
        get("source")?.as_str()?,
        get("target")?.as_str()?,
        get("read_only")?.as_bool()?,
    ))
}

#[test]
fn the_gateway_serves_https_with_the_local_certificate() {
    let compose = compose();
    let env = |name| text(&compose, &["services", "gateway", "environment", name]);
    assert_eq!(env("GATEWAY_LISTEN_TLS"), Some("0.0.0.0:8443"));
    assert_eq!(env("GATEWAY_HTTPS_PORT"), Some("${GATEWAY_TLS_PORT:-443}"));
    let ports = strings(&compose, &["services", "gateway", "ports"]);
    assert!(
        ports.contains(&"${GATEWAY_TLS_PORT:-443}:8443".to_owned()),
        "{ports:?}"
    );
    // credentialName X is read from GATEWAY_CREDENTIALS_DIR/X: the folder `gateway cert` makes
    // for the name k8s/tls/ asks for, mounted read-only, and never the CA's key beside it.
    let https = load(&workspace_root().join("k8s/tls/gateway.yaml"));
    let server = &https["spec"]["servers"][0];
    assert_eq!(server["port"]["protocol"].as_str(), Some("HTTPS"));
    let name = server["tls"]["credentialName"]
        .as_str()
        .expect("credentialName");
    let dir = env("GATEWAY_CREDENTIALS_DIR").expect("GATEWAY_CREDENTIALS_DIR");
    let volumes = compose["services"]["gateway"]["volumes"]
        .as_sequence()
        .expect("volumes");
    let binds: Vec<_> = volumes.iter().filter_map(bind).collect();
    assert_eq!(
        binds,
        [(
            format!("./.sticky/certs/{name}").as_str(),
            format!("{dir}/{name}").as_str(),
            true
        )]
    );
    // The loadtest trusts that CA for `LOAD_SCHEME=https just load`.
    let loadtest = &compose["services"]["loadtest"];
    let ca = loadtest["environment"]["LOADTEST_CA_CERT"].as_str();
    let binds: Vec<_> = loadtest["volumes"]
        .as_sequence()
        .expect("loadtest volumes")
        .iter()
        .filter_map(bind)
        .collect();
    assert_eq!(binds, [("./.sticky/certs/ca/ca.crt", ca.unwrap(), true)]);
}

#[test]
fn every_service_is_hardened_and_checks_its_own_health() {
    let compose = compose();
    for service in ["sticky-svc", "gateway", "loadtest"] {
        let svc = &compose["services"][service];
        assert_eq!(svc["read_only"].as_bool(), Some(true), "{service}");
        assert_eq!(strings(svc, &["cap_drop"]), ["ALL"], "{service}");
        assert_eq!(
            strings(svc, &["security_opt"]),
            ["no-new-privileges:true"],
            "{service}"
        );
        assert_eq!(svc["pull_policy"].as_str(), Some("never"), "{service}");
    }
    for service in ["sticky-svc", "gateway"] {
        let test = strings(&compose, &["services", service, "healthcheck", "test"]);
        assert_eq!(test, ["CMD", &format!("/{service}"), "healthcheck"]);
    }
    assert_eq!(
        strings(&compose, &["services", "loadtest", "profiles"]),
        ["load"]
    );
}
