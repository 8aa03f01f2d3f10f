#!/usr/bin/env python3
"""Helpers of bench/peers.sh.

  peers.py sticky --port P --users N --repeat M --out FILE --workers W --target NAME
      Sends N users x M requests (`GET /ping`, header `x-user: user-<n>`, users interleaved) on
      one keep-alive connection and checks that each user's answers name one backend in
      sticky-svc's `x-served-by`. Exits 1 when a user was split, a request failed, or every
      user landed on one backend (a proxy that sends everyone to one replica is not balancing).
      Standard library only.

  peers.py report --results R --rss S --sticky K --meta M --doc FILE --png FILE
      Medians per proxy, ratios, goals; writes the Markdown section (between markers) into FILE
      and, when matplotlib is importable, the plot.
"""

import argparse
import collections
import http.client
import json
import statistics
import sys

BEGIN = "<!-- bench-peers:begin (written by bench/peers.sh; edit outside the markers) -->"
END = "<!-- bench-peers:end -->"
TARGETS = [("direct", "direct (ceiling)"), ("nginx", "nginx"), ("haproxy", "HAProxy"),
           ("gateway", "gateway"), ("haproxy-h2", "HAProxy, HTTP/2 upstream"),
           ("gateway-h2", "gateway, HTTP/2 upstream")]


def sticky(args):
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
    served = collections.defaultdict(set)
    per_backend = collections.Counter()
    failures = 0
    for _ in range(args.repeat):
        for n in range(1, args.users + 1):
            user = f"user-{n}"
            try:
                conn.request("GET", "/ping", headers={"x-user": user})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                failures += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
                continue
            backend = response.getheader("x-served-by")
            if response.status != 200 or backend is None:
                failures += 1
                continue
            served[user].add(backend)
            per_backend[backend] += 1
    split = sum(1 for backends in served.values() if len(backends) > 1)
    spread = dict(sorted(per_backend.items()))
    ok = failures == 0 and split == 0 and len(served) == args.users and len(spread) > 1
    with open(args.out, "a", encoding="utf-8") as out:
        out.write(json.dumps({"workers": args.workers, "target": args.target,
                              "users": args.users, "repeat": args.repeat, "split": split,
                              "failures": failures, "spread": spread, "ok": ok}) + "\n")
    print(f"sticky check {args.target} ({args.workers} worker(s)): {args.users} users x "
          f"{args.repeat} requests, {split} users split over backends, {failures} failed, "
          f"requests per backend {spread}: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


def read_meta(path):
    meta = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value
    return meta


def summarize(results_path, clk_tck):
    """(workers, target) -> medians; plus per-round rows for paired ratios."""
    runs = collections.defaultdict(list)
    with open(results_path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            w, target, rnd, requests, duration_us, p50, p99, p999, errors, status, ticks, \
                sys_ticks, replica_ticks = fields[:13]
            # /proc/stat of the two CPUs (older results files lack them): the other CPU's
            # busy and total ticks, then steal and total ticks of both.
            other_busy, other_total, steal, total = (int(v) for v in fields[13:17]) \
                if len(fields) >= 17 else (0, 0, 0, 0)
            requests, duration = int(requests), int(duration_us) / 1e6
            runs[(int(w), target)].append({
                "other100k": other_busy / clk_tck / max(requests, 1) * 1e5,
                "other_busy": other_busy / max(other_total, 1),
                "steal": steal / max(total, 1) * 100,
                "round": int(rnd),
                "rps": requests / duration,
                "p50": float(p50) / 1000, "p99": float(p99) / 1000, "p999": float(p999) / 1000,
                "errors": int(errors) + int(status),
                "cpu100k": int(ticks) / clk_tck / max(requests, 1) * 1e5,
                "kernel": int(sys_ticks) / max(int(ticks), 1) * 100,
                "replicas100k": int(replica_ticks) / clk_tck / max(requests, 1) * 1e5,
                "busy": int(ticks) / clk_tck / duration,
            })
    medians = {}
    for key, rows in runs.items():
        m = {k: statistics.median(r[k] for r in rows)
             for k in ("rps", "p50", "p99", "p999", "cpu100k", "kernel", "busy", "replicas100k",
                       "other100k", "other_busy", "steal")}
        m["errors"] = sum(r["errors"] for r in rows)
        m["rounds"] = len(rows)
        medians[key] = m
    return runs, medians


def paired_ratio(runs, workers, a, b):
    """Median over rounds of a's req/s over b's in the same round (each pair ran back to back)."""
    rb = {r["round"]: r["rps"] for r in runs.get((workers, b), [])}
    ratios = [r["rps"] / rb[r["round"]] for r in runs.get((workers, a), []) if r["round"] in rb]
    return statistics.median(ratios) if ratios else float("nan")


def best_peer_rps(*peers):
    """The best requests/s among the peers' rows that were measured."""
    return max(p["rps"] for p in peers if p)


def verdict(ok):
    return "**met**" if ok else "**not met**"


def section(meta, runs, medians, rss, sticky_rows, png_name):
    lines = [BEGIN, ""]
    lines.append(f"Run {meta['date']} at commit `{meta['commit']}`:")
    lines += ["", "```console", f"$ {meta['command']}", "```", ""]
    lines.append(f"Machine: {meta['machine']}; {meta['versions']}. Load average (1, 5, 15 min) "
                 f"before: {meta['load_before']}, after: {meta['load_after']}.")
    lines.append("")
    lines.append(f"Load: `wrk -t1 -c{meta['connections']}` for {meta['duration']} per run over "
                 f"{meta['users']} users (`bench/peers.lua`), {meta['rounds']} rounds of "
                 "direct, nginx, HAProxy, gateway, HAProxy and gateway with HTTP/2 upstream in "
                 "turn after a warm-up of each; medians over "
                 "rounds. CPU is the proxy's own (all its processes and threads) from "
                 "`/proc/<pid>/stat`, kernel % its share spent in the kernel (system calls, "
                 "loopback TCP); busy = CPU seconds per second of the run (1.0 = one "
                 "core); replicas' CPU is the 5 sticky-svc replicas' together, what the "
                 "proxy's way of talking to them costs the backends (with one worker they "
                 "share a CPU with wrk, so it also bounds the requests/s a proxy can reach); "
                 "CPU 1 busy is the share of the run CPU 1 (wrk and the replicas, and with two "
                 "workers also the proxy's threads the kernel put there) was not idle, from "
                 "`/proc/stat`; steal % the share of both CPUs' time the hypervisor gave to "
                 "another guest while ours had work (the machine's slow spells); "
                 f"peak RSS is `VmHWM` (nginx: master + workers). {meta['pinning']}")
    lines.append("")
    goals = []
    for workers in sorted({w for w, _ in medians}):
        lines.append(f"#### {workers} worker{'s' if workers > 1 else ''} per proxy")
        lines.append("")
        lines.append("| proxy | requests/s | p50 ms | p99 ms | p99.9 ms | errors | peak RSS MiB "
                     "| CPU s / 100k requests | kernel % | busy | replicas' CPU s / 100k "
                     "| CPU 1 busy | steal % |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for target, name in TARGETS:
            m = medians.get((workers, target))
            if m is None:
                continue
            kib = rss.get((workers, target))
            rss_text = f"{kib / 1024:.1f}" if kib else "–"
            lines.append(f"| {name} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
                         f"{m['p999']:.2f} | {m['errors']} | {rss_text} | {m['cpu100k']:.2f} | "
                         f"{m['kernel']:.0f} | {m['busy']:.2f} | {m['replicas100k']:.2f} | "
                         f"{m['other_busy']:.2f} | {m['steal']:.1f} |")
        lines.append("")
        g, n, h = (medians.get((workers, t)) for t in ("gateway", "nginx", "haproxy"))
        if not (g and n and h):
            continue
        rn, rh = g["rps"] / n["rps"], g["rps"] / h["rps"]
        pn, ph = (paired_ratio(runs, workers, "gateway", t) for t in ("nginx", "haproxy"))
        cn, ch = n["cpu100k"] / g["cpu100k"], h["cpu100k"] / g["cpu100k"]
        lines.append(f"Ratios at {workers} worker(s): gateway / nginx **{rn:.2f}** requests/s "
                     f"(median of per-round ratios {pn:.2f}; CPU per request {cn:.2f}× as "
                     f"efficient); gateway / HAProxy **{rh:.2f}** (per-round {ph:.2f}; CPU "
                     f"{ch:.2f}×).")
        gh, hh = medians.get((workers, "gateway-h2")), medians.get((workers, "haproxy-h2"))
        if gh and hh:
            lines.append("")
            lines.append(f"With HTTP/2 to the replicas: gateway / HAProxy (both HTTP/2) "
                         f"**{gh['rps'] / hh['rps']:.2f}** (per-round "
                         f"{paired_ratio(runs, workers, 'gateway-h2', 'haproxy-h2'):.2f}); "
                         f"gateway (HTTP/2) / HAProxy (HTTP/1.1) **{gh['rps'] / h['rps']:.2f}**; "
                         f"gateway HTTP/2 / HTTP/1.1 upstream **{gh['rps'] / g['rps']:.2f}**.")
        if workers == 1 and g["other_busy"] > 0:
            # With one worker CPU 1 holds only wrk and the replicas: what they spend per
            # request through a proxy caps that proxy's row whatever the proxy costs itself.
            rows = [("gateway", g), ("gateway, HTTP/2 upstream", gh)] if gh else [("gateway", g)]
            caps = "; ".join(
                f"{name}: {m['other100k'] * 10:.1f} µs of CPU 1 per request, so at most "
                f"{m['rps'] / m['other_busy']:,.0f} requests/s, "
                f"{m['rps'] / m['other_busy'] / best_peer_rps(h, hh, n):.2f}× the best peer row"
                for name, m in rows if m and m["other_busy"] > 0)
            lines.append("")
            lines.append("What CPU 1 allows (wrk and the five replicas, whose cost per request "
                         "depends on the proxy in front; the measured rate divided by CPU 1's "
                         f"busy share): {caps}.")
        lines.append("")
        want = 1.2 if workers == 1 else 1.0
        # Like for like (HTTP/1.1 to the replicas, as nginx can only do), then each proxy
        # with the upstream protocol that serves it best (HAProxy's `proto h2` and the
        # gateway's HTTP2 port when they were measured).
        h2 = {t: medians.get((workers, t)) for t in ("gateway-h2", "haproxy-h2")}
        comparisons = [("HTTP/1.1 upstream for all (like for like)", g, [n, h])]
        if h2["gateway-h2"] and h2["haproxy-h2"]:
            best_gateway = max(g, h2["gateway-h2"], key=lambda m: m["rps"])
            comparisons.append(("each proxy's best upstream protocol", best_gateway,
                                [n, max(h, h2["haproxy-h2"], key=lambda m: m["rps"])]))
        for label, gm, peers in comparisons:
            best = max(p["rps"] for p in peers)
            p99s = [p["p99"] for p in peers]
            g_key = "gateway" if gm is g else "gateway-h2"
            g_rss, n_rss = rss.get((workers, g_key)), rss.get((workers, "nginx"))
            goals.append(f"- {workers} worker(s), {label}: requests/s ≥ {want}× the better "
                         f"peer ({gm['rps'] / best:.2f}×): {verdict(gm['rps'] >= want * best)}; "
                         f"p99 no worse than either ({gm['p99']:.2f} ms vs "
                         f"{' / '.join(f'{v:.2f}' for v in p99s)}): "
                         f"{verdict(gm['p99'] <= min(p99s))}; zero errors: "
                         f"{verdict(gm['errors'] == 0)}; peak RSS ≤ 2× nginx's"
                         + (f" ({g_rss / n_rss:.2f}×): {verdict(g_rss <= 2 * n_rss)}"
                            if g_rss and n_rss else ": not measured"))
    lines.append("#### Stickiness (checked in the same run)")
    lines.append("")
    lines.append("| proxy | workers | users × requests | users split | failed | requests per "
                 "backend |")
    lines.append("|---|---:|---|---:|---:|---|")
    names = dict(TARGETS)
    for row in sticky_rows:
        spread = ", ".join(f"{k} {v}" for k, v in row["spread"].items())
        lines.append(f"| {names.get(row['target'], row['target'])} | {row['workers']} | "
                     f"{row['users']} × {row['repeat']} | {row['split']} | {row['failures']} | "
                     f"{spread} |")
    lines.append("")
    all_sticky = bool(sticky_rows) and all(r["ok"] for r in sticky_rows)
    lines.append(f"Every proxy kept each user on one backend and spread users over several: "
                 f"{'yes' if all_sticky else '**no**'}.")
    lines.append("")
    lines.append("#### Goals of issue 9, as measured in this run")
    lines.append("")
    lines += goals
    lines.append("")
    if png_name:
        lines.append(f"![requests/s, p99 and CPU per request of each proxy]({png_name})")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def plot(medians, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)
        return False
    workers = sorted({w for w, _ in medians})
    panels = [("rps", "requests/s"), ("p99", "p99 latency, ms"),
              ("cpu100k", "CPU s per 100k requests")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    width = 0.8 / len(TARGETS)
    for ax, (key, title) in zip(axes, panels):
        for i, (target, name) in enumerate(TARGETS):
            xs = [j + i * width for j in range(len(workers))]
            ys = [medians.get((w, target), {}).get(key, 0) for w in workers]
            ax.bar(xs, ys, width, label=name)
        ax.set_xticks([j + width * (len(TARGETS) - 1) / 2 for j in range(len(workers))])
        ax.set_xticklabels([f"{w} worker{'s' if w > 1 else ''}" for w in workers])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    return True


def report(args):
    meta = read_meta(args.meta)
    runs, medians = summarize(args.results, int(meta["clk_tck"]))
    rss = {}
    with open(args.rss, encoding="utf-8") as f:
        for line in f:
            w, target, kib = line.split()
            rss[(int(w), target)] = int(kib)
    with open(args.sticky, encoding="utf-8") as f:
        sticky_rows = [json.loads(line) for line in f if line.strip()]
    png_name = None
    if args.png and plot(medians, args.png):
        png_name = args.png.rsplit("/", 1)[-1]
    text = section(meta, runs, medians, rss, sticky_rows, png_name)
    print(text)
    if args.doc:
        write_section(args.doc, text, BEGIN, END, "Gateway against nginx and HAProxy")
    return 0


def write_section(doc_path, text, begin, end, heading):
    """Puts `text` (which starts with `begin` and ends with `end`) in place of the marked
    section of the document at `doc_path`, or at its end under `heading` the first time."""
    with open(doc_path, encoding="utf-8") as f:
        doc = f.read()
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        doc = head + text + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + f"\n\n## {heading}\n\n" + text + "\n"
    with open(doc_path, "w", encoding="utf-8") as f:
        f.write(doc)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sticky")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--users", type=int, default=1000)
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument("--out", required=True)
    s.add_argument("--workers", type=int, required=True)
    s.add_argument("--target", required=True)
    r = sub.add_parser("report")
    for name in ("results", "rss", "sticky", "meta"):
        r.add_argument(f"--{name}", required=True)
    r.add_argument("--doc")
    r.add_argument("--png")
    args = parser.parse_args()
    return sticky(args) if args.command == "sticky" else report(args)


if __name__ == "__main__":
    sys.exit(main())
