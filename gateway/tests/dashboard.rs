//! The live dashboard in a real browser: headless Chromium keeps one page open on the admin
//! listener's `/` while replicas are added and removed behind the gateway, and the page follows
//! by itself (server-sent events), never reloading: a marker set in the page survives.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `CHROME` and `CHROMEDRIVER`); without
//! them it fails saying so, unless `STICKY_E2E=skip`. Writes a screenshot of five replicas to
//! `target/dashboard/dashboard.png`, or to `DASHBOARD_SCREENSHOT` (`just dashboard-screenshot`
//! writes the one in docs/).

#[path = "support/browser.rs"]
mod browser;
#[path = "support/stack.rs"]
mod stack;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser::Browser;
use fantoccini::Locator;
use fantoccini::elements::Element;
use serde::Deserialize;
use stack::{Backend, Http, RunningGateway, ping_all, static_config, users, wait_for};

const HOST: &str = "sticky-svc.default.svc.cluster.local";
/// The article's policy, with Maglev's table size written out.
const BY_USER: &str = "      consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65537}}";
/// Long enough to tell a cold call from a warm one, short enough for 300 users.
const COST: Duration = Duration::from_millis(30);
/// How long the page may take to show a change (it is pushed; this only bounds a failure).
const PAGE_WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_replicas_live_without_reloading() {
    let Some(tools) = browser::tools_or_skip("dashboard test") else {
        return;
    };
    let scene = Scene::start().await;
    traffic(&scene.http, scene.gw.addr, &users(150)).await;

    let browser = Browser::start(&tools).await;
    let page_url = format!("http://{}/", scene.gw.admin);
    let loaded = browser.client.goto(&page_url).await;
    loaded.expect("the dashboard loads");
    wait_page(&browser, "the page lists the 4 replicas", |p| {
        p.live() && p.endpoints() == sorted(&scene.addrs[..4])
    })
    .await;

    let homes = scene.scale_to_five(&browser).await;
    // The lookup box names the replica that served a user: one on the replica to be removed.
    let gone = scene.addrs[0];
    let user = homes
        .iter()
        .find(|(_, host)| **host == scene.names[&gone])
        .map(|(user, _)| user.clone())
        .expect("a user on sticky-svc-1");
    let cluster = lookup(&browser, &user).await;
    let home = scene.lookup_json(&cluster, &user).await;
    assert_eq!(home, gone.to_string(), "/lookup and x-served-by disagree");
    wait_text(&browser, "#lookup-result", &home).await;
    browser.screenshot(&screenshot_path()).await;

    scene.remove_first(&browser).await;
    let now = wait_for("the user's key to move", PAGE_WAIT, async || {
        let now = scene.lookup_json(&cluster, &user).await;
        if now != home { Ok(now) } else { Err(now) }
    })
    .await;
    lookup_after_change(&browser, &now, &home).await;
    let marker = browser.eval("return window.__stickyMarker ?? null;").await;
    assert_eq!(marker, "kept", "the page was reloaded");
    browser.close().await;
}

/// Five sticky-svc backends, `sticky-svc-1`…, and a gateway in front of the first four.
struct Scene {
    addrs: Vec<SocketAddr>,
    names: HashMap<SocketAddr, String>,
    gw: RunningGateway,
    http: Http,
    _backends: Vec<Backend>,
}

impl Scene {
    async fn start() -> Self {
        let mut backends = Vec::new();
        for i in 1..=5 {
            let name = format!("sticky-svc-{i}");
            backends.push(Backend::start(&name, "127.0.0.1:0".parse().unwrap(), COST).await);
        }
        let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
        let names = backends.iter().map(|b| (b.addr, b.name.clone())).collect();
        let gw = RunningGateway::start(&static_config(&addrs[..4], BY_USER), None).await;
        Self {
            addrs,
            names,
            gw,
            http: Http::new(),
            _backends: backends,
        }
    }

    /// Scale 4 → 5 by a hot reload, traffic that reaches the new replica, and the page showing
    /// all five with their names, shares and counts. Returns where the new users live.
    async fn scale_to_five(&self, browser: &Browser) -> HashMap<String, String> {
        self.gw.write_config(&static_config(&self.addrs, BY_USER));
        let five = sorted(&self.addrs);
        wait_page(browser, "a 5th row", |p| p.endpoints() == five).await;
        // Users new since the scale (earlier ones may have moved to the 5th).
        let late: Vec<String> = (150..300).map(|i| format!("user-{i}")).collect();
        let homes = traffic(&self.http, self.gw.addr, &late).await;
        let page = wait_page(
            browser,
            "5 named, healthy replicas with users, cold and warm answers, and an `added` event",
            |p| {
                p.live()
                    && p.endpoints() == five
                    && p.rows().iter().all(|r| self.row_complete(r))
                    && p.timeline.iter().any(|k| k == "added")
            },
        )
        .await;
        let shares: f64 = page.rows().iter().map(|r| percent(&r.share)).sum();
        assert!(
            (99.0..=101.0).contains(&shares),
            "the table shares add up to {shares}%: {page:#?}"
        );
        // At least the calls made while the page was open: 150 first calls, 300 later ones.
        let sum = |cell: fn(&Row) -> &str| page.rows().iter().map(|r| count(cell(r))).sum::<u64>();
        let (cold, warm) = (sum(|r| &r.cold), sum(|r| &r.warm));
        assert!(
            cold >= 150 && warm >= 300,
            "{cold} cold and {warm} warm answers shown: {page:#?}"
        );
        homes
    }

    /// The row names its replica, which is healthy, has users, cold and warm answers.
    fn row_complete(&self, r: &Row) -> bool {
        let name = r.endpoint.parse().ok().and_then(|a| self.names.get(&a));
        let named = r
            .name
            .as_deref()
            .zip(name)
            .is_some_and(|(n, e)| n.contains(e.as_str()));
        named
            && r.health.starts_with("healthy")
            && count(&r.users) > 0
            && count(&r.cold) > 0
            && count(&r.warm) > 0
    }

    /// Removes `sticky-svc-1` by a hot reload with a marker set in the page: the page follows
    /// and keeps the marker (it was not reloaded).
    async fn remove_first(&self, browser: &Browser) {
        browser
            .eval("window.__stickyMarker = 'kept'; return true;")
            .await;
        self.gw
            .write_config(&static_config(&self.addrs[1..], BY_USER));
        let four = sorted(&self.addrs[1..]);
        let page = wait_page(
            browser,
            "4 rows without the removed replica, and a `removed` event",
            |p| p.live() && p.endpoints() == four && p.timeline.iter().any(|k| k == "removed"),
        )
        .await;
        assert_eq!(
            page.marker.as_deref(),
            Some("kept"),
            "the page was reloaded: the marker set in it is gone"
        );
    }

    /// The admin's `/lookup` answer for `key`: the endpoint it maps to now.
    async fn lookup_json(&self, cluster: &str, key: &str) -> String {
        let host = cluster.rsplit('|').next().unwrap_or(cluster);
        let path = format!("/lookup?cluster={host}&key={key}");
        let body = self.http.get(self.gw.admin, &path, None).await.body;
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("/lookup answers JSON ({e}): {body}"));
        json["endpoint"].as_str().unwrap_or_default().to_owned()
    }
}

/// Three calls per user, checked sticky; returns user → the replica that served it.
async fn traffic(http: &Http, gw: SocketAddr, users: &[String]) -> HashMap<String, String> {
    let first = ping_all(http, gw, users, 32).await;
    for (user, a) in &first {
        assert_eq!(
            (a.status, a.cache.as_deref()),
            (200, Some("miss")),
            "{user}: {a:?}"
        );
    }
    for _ in 0..2 {
        let again = ping_all(http, gw, users, 32).await;
        for (user, a) in &again {
            assert_eq!(a.status, 200, "{user}: {a:?}");
            assert_eq!(a.cache.as_deref(), Some("hit"), "{user}: {a:?}");
            assert_eq!(a.host, first[user].host, "{user} moved");
        }
    }
    first
        .into_iter()
        .map(|(user, a)| (user, a.host.expect("x-served-by")))
        .collect()
}

/// What the page shows, read in one script (the DOM contract of gateway/src/admin/dashboard.html).
#[derive(Debug, Deserialize)]
struct Page {
    live: Option<String>,
    clusters: Vec<ClusterView>,
    timeline: Vec<String>,
    marker: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ClusterView {
    name: Option<String>,
    rows: Vec<Row>,
}

#[derive(Debug, Deserialize)]
struct Row {
    endpoint: String,
    name: Option<String>,
    health: String,
    share: String,
    users: String,
    cold: String,
    warm: String,
}

const READ_PAGE: &str = r#"
const all = (sel, root) => Array.from((root || document).querySelectorAll(sel));
const text = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent.trim() : ''; };
const live = document.querySelector('#live');
return {
  live: live ? live.getAttribute('data-state') : null,
  clusters: all('section.cluster').map(c => ({
    name: c.getAttribute('data-cluster'),
    rows: all('tr.replica', c).map(r => ({
      endpoint: r.getAttribute('data-endpoint') || '',
      name: text(r, 'td.name') || null,
      health: text(r, 'td.health'),
      share: text(r, 'td.share'),
      users: text(r, 'td.users'),
      cold: text(r, 'td.cold'),
      warm: text(r, 'td.warm'),
    })),
  })),
  timeline: all('#timeline li').map(l => l.getAttribute('data-kind') || ''),
  marker: window.__stickyMarker === undefined ? null : String(window.__stickyMarker),
};
"#;

impl Page {
    fn live(&self) -> bool {
        self.live.as_deref() == Some("open")
    }

    /// The rows of our one cluster.
    fn rows(&self) -> Vec<&Row> {
        self.clusters
            .iter()
            .filter(|c| c.name.as_deref().is_some_and(|n| n.contains(HOST)))
            .flat_map(|c| &c.rows)
            .collect()
    }

    fn endpoints(&self) -> Vec<String> {
        let mut out: Vec<String> = self.rows().iter().map(|r| r.endpoint.clone()).collect();
        out.sort();
        out
    }
}

fn sorted(addrs: &[SocketAddr]) -> Vec<String> {
    let mut out: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    out.sort();
    out
}

/// An integer cell; digits only, so `1 234` or `1,234` read as 1234.
fn count(cell: &str) -> u64 {
    let digits: String = cell.chars().filter(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

/// The number before the `%` in a share cell (`20.0%` and its bar).
fn percent(cell: &str) -> f64 {
    let number = cell.split('%').next().unwrap_or_default();
    number.trim().parse().unwrap_or(f64::NAN)
}

async fn read_page(browser: &Browser) -> Page {
    let value = browser.eval(READ_PAGE).await;
    serde_json::from_value(value).expect("the page read as expected")
}

/// Waits until `ready` holds for the page; fails with the last page seen.
async fn wait_page(browser: &Browser, what: &str, ready: impl Fn(&Page) -> bool) -> Page {
    wait_for(what, PAGE_WAIT, async || {
        let page = read_page(browser).await;
        if ready(&page) { Ok(page) } else { Err(page) }
    })
    .await
}

/// Waits until the element at `css` says `needle`.
async fn wait_text(browser: &Browser, css: &str, needle: &str) -> String {
    wait_for(&format!("{css} to say {needle}"), PAGE_WAIT, async || {
        let text = element_text(browser, css).await;
        if text.contains(needle) {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await
}

async fn find(browser: &Browser, css: &str) -> Element {
    let found = browser.client.find(Locator::Css(css)).await;
    found.unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

async fn element_text(browser: &Browser, css: &str) -> String {
    find(browser, css).await.text().await.unwrap_or_default()
}

/// Looks `user` up in the page's lookup box; returns the cluster chosen (the option's value).
async fn lookup(browser: &Browser, user: &str) -> String {
    let select = find(browser, "select#lookup-cluster").await;
    let mut cluster = None;
    for option in select.find_all(Locator::Css("option")).await.unwrap() {
        let value = option.attr("value").await.unwrap().unwrap_or_default();
        let label = option.text().await.unwrap_or_default();
        if value.contains(HOST) || label.contains(HOST) {
            option.click().await.unwrap();
            cluster = Some(if value.is_empty() { label } else { value });
            break;
        }
    }
    let cluster = cluster.unwrap_or_else(|| panic!("no option for {HOST} in the lookup box"));
    let key = find(browser, "input#lookup-key").await;
    key.clear().await.unwrap();
    key.send_keys(user).await.unwrap();
    find(browser, "button#lookup-go")
        .await
        .click()
        .await
        .unwrap();
    cluster
}

/// After the change, the lookup result names the key's endpoint now and the one before. Asked
/// again each second in case the page only answers on a click.
async fn lookup_after_change(browser: &Browser, now: &str, before: &str) {
    let mut clicked = Instant::now();
    wait_for(
        &format!("#lookup-result to name {now} and `before: {before}`"),
        PAGE_WAIT,
        async || {
            let text = element_text(browser, "#lookup-result").await;
            if text.contains(now) && text.contains("before:") && text.contains(before) {
                return Ok(());
            }
            if clicked.elapsed() > Duration::from_secs(1) {
                find(browser, "button#lookup-go")
                    .await
                    .click()
                    .await
                    .unwrap();
                clicked = Instant::now();
            }
            Err(text)
        },
    )
    .await;
}

/// `DASHBOARD_SCREENSHOT` (relative to the workspace) when set, else
/// `<target>/dashboard/dashboard.png`.
fn screenshot_path() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(path) = std::env::var_os("DASHBOARD_SCREENSHOT").filter(|p| !p.is_empty()) {
        return workspace.join(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| workspace.join(t))
        .unwrap_or_else(|| workspace.join("target"));
    target.join("dashboard").join("dashboard.png")
}
