#!/usr/bin/env python3
"""Report of bench/tls.sh: medians per proxy and load, gateway / best peer, the goal of
"HTTPS at the edge" (the gateway's CPU per handshake and per TLS request at most the best
peer's). Prints the Markdown section and, with --doc, writes it between its markers (the
section is appended when they are missing). Standard library only.

  tls.py --results R --checks C --rss S --meta M [--doc FILE]

results lines: MODE PROXY ROUND COUNT DURATION_US P50 P99 P999 ERRORS TICKS SYS_TICKS
CPU1_BUSY CPU1_TOTAL REPLICA_TICKS (MODE keepalive or handshakes; latencies in µs, "-" for
handshakes).
checks lines: PROXY PROTOCOL SUITE GROUP SIGNATURE ALPN VERIFY TICKETS RESUMED SERVED_BY HTTP.
"""

import argparse
import collections
import statistics
import sys

# The meta file and the marked section of the document are peers.py's (same folder).
from peers import read_meta, write_section

BEGIN = "<!-- bench-tls:begin (written by bench/tls.sh; edit outside the markers) -->"
END = "<!-- bench-tls:end -->"
PROXIES = [("nginx", "nginx"), ("haproxy", "HAProxy"), ("gateway", "gateway")]
PEERS = ("nginx", "haproxy")
# Per mode: the unit CPU is given in (per 100k requests, per 1k handshakes).
PER = {"keepalive": 1e5, "handshakes": 1e3}


def summarize(path, clk_tck):
    """(mode, proxy) -> list of per-run rows."""
    runs = collections.defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            (mode, proxy, rnd, count, duration_us, p50, p99, p999, errors, ticks, sys_ticks,
             other_busy, other_total, replicas) = line.split()
            count, duration, ticks = int(count), int(duration_us) / 1e6, int(ticks)
            lat = (lambda v: float(v) / 1000 if v != "-" else None)
            runs[(mode, proxy)].append({
                "round": int(rnd), "count": count, "rate": count / duration,
                "p50": lat(p50), "p99": lat(p99), "p999": lat(p999),
                "errors": int(errors),
                "cpu": ticks / clk_tck / max(count, 1) * PER[mode],
                "us": ticks / clk_tck / max(count, 1) * 1e6,
                "kernel": int(sys_ticks) / max(ticks, 1) * 100,
                "busy": ticks / clk_tck / duration,
                "cpu1": int(other_busy) / max(int(other_total), 1),
                "replicas": int(replicas) / clk_tck / max(count, 1) * PER[mode],
            })
    return runs


def median(rows, key):
    values = [r[key] for r in rows if r[key] is not None]
    return statistics.median(values) if values else None


def medians(runs):
    out = {}
    for key, rows in runs.items():
        m = {k: median(rows, k) for k in
             ("rate", "p50", "p99", "p999", "cpu", "us", "kernel", "busy", "cpu1", "replicas")}
        m["errors"] = sum(r["errors"] for r in rows)
        m["count"] = sum(r["count"] for r in rows)
        m["rounds"] = len(rows)
        out[key] = m
    return out


def per_round(runs, mode, key, best):
    """The gateway's KEY over the best peer's in the same round: (median, lowest, highest)."""
    by_round = collections.defaultdict(dict)
    for proxy in ("gateway",) + PEERS:
        for r in runs.get((mode, proxy), []):
            by_round[r["round"]][proxy] = r[key]
    ratios = [v["gateway"] / best(v[p] for p in PEERS)
              for v in by_round.values() if all(p in v for p in ("gateway",) + PEERS)]
    if not ratios:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt(value, spec):
    return "–" if value is None else format(value, spec)


def section(meta, runs, checks, rss):
    m = medians(runs)
    hz = meta["clk_tck"]
    lines = [BEGIN, "", f"Run {meta['date']} at commit `{meta['commit']}`:", "", "```console",
             f"$ {meta['command']}", "```", "",
             f"Machine: {meta['machine']}, everything in the same run; {meta['versions']}. "
             f"Load average (1, 5, 15 min) before: {meta['load_before']}, after: "
             f"{meta['load_after']}. {meta['pinning']}", "",
             f"Loads, {meta['rounds']} rounds, the three proxies in an order that rotates every "
             f"round, medians over rounds: **keep-alive** `wrk -t1 -c{meta['connections']}` over "
             f"HTTPS (HTTP/1.1, no ALPN) for {meta['duration']} s, {meta['users']} users in "
             "rotation (`bench/peers.lua`); **new handshakes** "
             f"{meta['handshake_clients']} × `openssl s_time -new -tls1_3` at once for "
             f"{meta['duration']} s: TCP connect, a full TLS 1.3 handshake, close, no request "
             "and never a session offered. CPU is the proxy's own (all its processes and "
             "threads, user + system) from `/proc/<pid>/stat` in ticks of "
             f"1/{hz} s, kernel % its system share, busy its CPU seconds per second; "
             "replicas' CPU the 5 sticky-svc replicas' together (they share CPU 1 with the "
             "clients); CPU 1 busy how busy the clients' and replicas' CPU was (from "
             "`/proc/stat`); peak RSS is `VmHWM` at the end.", ""]

    lines += ["#### What each proxy negotiated (`openssl s_client` with the clients' config)", "",
              "| proxy | protocol | suite | group | signature | tickets sent | a ticket resumed "
              "| verified with the CA | curl: HTTP version (ALPN) | x-served-by |",
              "|---|---|---|---|---|---:|---|---|---|---|"]
    names = dict(PROXIES)
    for c in checks:
        (proxy, protocol, suite, group, sig, _alpn, verify, tickets, resumed, served,
         http) = c
        lines.append(f"| {names.get(proxy, proxy)} | {protocol} | {suite} | {group} | {sig} | "
                     f"{tickets} | {'yes' if resumed != '0' else 'no'} | "
                     f"{'yes' if verify == '0' else 'no (' + verify + ')'} | {http} | {served} |")
    lines.append("")

    lines += ["#### Keep-alive requests over TLS", "",
              "| proxy | requests/s | p50 ms | p99 ms | p99.9 ms | errors | CPU s / 100k "
              "requests | µs / request | kernel % | busy | replicas' CPU s / 100k | CPU 1 busy "
              "| peak RSS MiB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for proxy, name in PROXIES:
        r = m.get(("keepalive", proxy))
        if r:
            kib = rss.get(proxy)
            lines.append(f"| {name} | {r['rate']:,.0f} | {fmt(r['p50'], '.2f')} | "
                         f"{fmt(r['p99'], '.2f')} | {fmt(r['p999'], '.2f')} | {r['errors']} | "
                         f"{r['cpu']:.2f} | {r['us']:.1f} | {r['kernel']:.0f} | "
                         f"{r['busy']:.2f} | {r['replicas']:.2f} | {r['cpu1']:.2f} | "
                         f"{fmt(kib / 1024 if kib else None, '.1f')} |")
    lines += ["", "#### New TLS 1.3 handshakes", "",
              "| proxy | handshakes/s | failed clients | CPU s / 1k handshakes | µs / handshake "
              "| one core's worth (1 s / CPU per handshake) | kernel % | busy | CPU 1 busy |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for proxy, name in PROXIES:
        r = m.get(("handshakes", proxy))
        if r:
            lines.append(f"| {name} | {r['rate']:,.0f} | {r['errors']} | {r['cpu']:.3f} | "
                         f"{r['us']:.0f} | {1e6 / r['us']:,.0f} | {r['kernel']:.0f} | "
                         f"{r['busy']:.2f} | "
                         f"{r['cpu1']:.2f} |")
    lines.append("")

    goals = []
    for mode, what, unit in (("keepalive", "per TLS request", "requests/s"),
                             ("handshakes", "per handshake", "handshakes/s")):
        g = m.get((mode, "gateway"))
        peers = [(p, m.get((mode, p))) for p in PEERS if m.get((mode, p))]
        if not g or len(peers) < 2:
            continue
        best_name, best = min(peers, key=lambda pm: pm[1]["cpu"])
        fastest_name, fastest = max(peers, key=lambda pm: pm[1]["rate"])
        ratio = g["cpu"] / best["cpu"]
        paired, low, high = per_round(runs, mode, "cpu", min)
        rate_ratio = g["rate"] / fastest["rate"]
        rate_paired, _, _ = per_round(runs, mode, "rate", max)
        more = (f"{(ratio - 1) * 100:.0f}% more than" if ratio > 1.005 else
                f"{(1 - ratio) * 100:.0f}% less than" if ratio < 0.995 else "level with")
        goals.append(
            f"- CPU {what} ≤ the best peer's: gateway {g['us']:.1f} µs against "
            f"{names[best_name]}'s {best['us']:.1f} µs, **{ratio:.3f}×** (per-round ratios "
            f"{low:.2f}–{high:.2f}×, median {paired:.2f}×; {more} the best peer): "
            f"{'**met**' if ratio <= 1.0 else '**not met**'}. {unit}: gateway / "
            f"{names[fastest_name]} **{rate_ratio:.2f}** (per-round {rate_paired:.2f}); "
            f"errors {g['errors']}.")
    lines += ["#### The goal, as measured in this run", ""] + goals + ["", END]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("results", "checks", "rss", "meta"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--doc")
    args = parser.parse_args()
    meta = read_meta(args.meta)
    runs = summarize(args.results, int(meta["clk_tck"]))
    with open(args.checks, encoding="utf-8") as f:
        checks = [line.split() for line in f if line.strip()]
    rss = {}
    with open(args.rss, encoding="utf-8") as f:
        for line in f:
            proxy, kib = line.split()
            rss[proxy] = int(kib)
    text = section(meta, runs, checks, rss)
    print(text)
    if args.doc:
        write_section(args.doc, text, BEGIN, END,
                      "HTTPS at the edge: the gateway against nginx and HAProxy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
