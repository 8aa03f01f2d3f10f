//! Headless Chromium for page tests: chromedriver as a child process on a free loopback port,
//! and one WebDriver session (fantoccini) kept for the whole test, so a page that updates
//! itself is seen doing so, with no reload. Chromium and chromedriver are Debian's `chromium`
//! and `chromium-driver`, or the ones `CHROME` and `CHROMEDRIVER` name.

#![allow(dead_code)] // each test file uses a different part

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fantoccini::{Client, ClientBuilder};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustix::process::{Pid, Signal, kill_process_group};
use serde_json::{Value, json};

/// The browser and its driver, found on this machine.
#[derive(Debug, Clone)]
pub struct Tools {
    pub chrome: PathBuf,
    pub chromedriver: PathBuf,
}

/// `CHROME` and `CHROMEDRIVER` when set, else `chromium` (or `google-chrome`) and
/// `chromedriver` on PATH; `Err` says what is missing.
pub fn find_tools() -> Result<Tools, String> {
    let chrome = from_env_or_path(
        "CHROME",
        &["chromium", "google-chrome", "google-chrome-stable"],
    );
    let chromedriver = from_env_or_path("CHROMEDRIVER", &["chromedriver"]);
    match (chrome, chromedriver) {
        (Ok(chrome), Ok(chromedriver)) => Ok(Tools {
            chrome,
            chromedriver,
        }),
        (chrome, driver) => Err([chrome.err(), driver.err()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

/// The tools, or `None` after a line saying the test is skipped under `STICKY_E2E=skip`;
/// without that opt-out a missing browser fails the test, naming the packages.
pub fn tools_or_skip(test: &str) -> Option<Tools> {
    match find_tools() {
        Ok(tools) => Some(tools),
        Err(missing) if std::env::var("STICKY_E2E").as_deref() == Ok("skip") => {
            println!("{test}: SKIPPED (STICKY_E2E=skip): {missing}");
            None
        }
        Err(missing) => panic!(
            "{test} drives a headless Chromium through chromedriver, but {missing}. Install \
             them (Debian/Ubuntu: apt-get install chromium chromium-driver), or point CHROME and \
             CHROMEDRIVER at a Chrome and its chromedriver, or set STICKY_E2E=skip to skip the \
             browser and Docker tests."
        ),
    }
}

/// `var` (a path, or a name looked up on PATH) when set, else the first of `names` on PATH.
fn from_env_or_path(var: &str, names: &[&str]) -> Result<PathBuf, String> {
    if let Some(set) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&set);
        let found = if path.components().count() > 1 {
            Some(path).filter(|p| is_executable(p))
        } else {
            on_path(&set.to_string_lossy())
        };
        return found.ok_or_else(|| format!("{var}={} is not an executable file", set.display()));
    }
    names
        .iter()
        .find_map(|name| on_path(name))
        .ok_or_else(|| match names {
            [one] => format!("{one} is not on PATH ({var} unset)"),
            _ => format!("none of {} is on PATH ({var} unset)", names.join(", ")),
        })
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// chromedriver, and every Chromium it starts: one process group, killed when dropped
/// (a failed test never closes its session, and its browser must not outlive it).
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    fn start(path: &Path, dir: &Path) -> Self {
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let out = File::create(&log).expect("create chromedriver.log");
        let err = out.try_clone().unwrap();
        let child = std::os::unix::process::CommandExt::process_group(
            Command::new(path)
                .arg(format!("--port={port}"))
                // Chromium's own temporary folders (a singleton socket) go with ours.
                .env("TMPDIR", dir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err),
            0,
        )
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        Self { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/status` until the driver says it is ready (it takes new sessions).
    async fn wait_ready(&mut self, within: Duration) {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build::<_, Empty<Bytes>>(HttpConnector::new());
        let url: http::Uri = format!("{}/status", self.url()).parse().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chromedriver exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            let last =
                match tokio::time::timeout(Duration::from_secs(2), client.get(url.clone())).await {
                    Ok(Ok(res)) => {
                        let body = res.into_body().collect().await.map(|b| b.to_bytes());
                        let status: Value = body
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or_default();
                        if status["value"]["ready"] == true {
                            return;
                        }
                        status.to_string()
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer within 2 s".to_owned(),
                };
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready after {within:?} (last seen: {last}); its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let _ = self.child.wait();
    }
}

/// A port nobody listens on now (the driver binds it a moment later).
fn free_port() -> u16 {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    listener.local_addr().unwrap().port()
}

/// A headless Chromium session. Dropping it kills the browser; `close` ends it politely.
pub struct Browser {
    pub client: Client,
    // Field order is drop order: the driver (and its browsers) go before their profile folder.
    driver: Driver,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and opens a session on a headless Chromium 1400×1000.
    pub async fn start(tools: &Tools) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut driver = Driver::start(&tools.chromedriver, dir.path());
        driver.wait_ready(Duration::from_secs(20)).await;
        let profile = dir.path().join("profile");
        let options = json!({
            "binary": tools.chrome,
            "args": [
                "--headless=new",
                // As root, and in containers, Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                // Docker's /dev/shm is 64 MiB: too small for the renderer.
                "--disable-dev-shm-usage",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        });
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no WebDriver session with {}: {e}; chromedriver's log:\n{}",
                    tools.chrome.display(),
                    driver.log()
                )
            });
        Self {
            client,
            driver,
            dir,
        }
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// A PNG of the window, written to `path` (its folder made if missing).
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("a screenshot");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Ends the session (chromedriver stops the browser), then the driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
