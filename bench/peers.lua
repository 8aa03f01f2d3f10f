-- wrk script of bench/peers.sh: the user rotation of users.lua (BENCH_USERS users, round
-- robin), plus one machine-readable line at the end with what `--latency` does not print
-- (p99.9) and every error wrk counted. Latencies in microseconds.
dofile("bench/users.lua")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("result %d %d %.0f %.0f %.0f %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.timeout, e.status))
end
