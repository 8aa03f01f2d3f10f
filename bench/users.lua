-- wrk script: each request names one of BENCH_USERS warm users, round robin, so the
-- benchmark reads many cache entries rather than one. Used when USERS > 1.
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local requests = {}
local next_user = 0

-- Built in init, not at load time: only then does wrk know the Host header to send.
function init(args)
  for n = 1, users do
    requests[n] = wrk.format("GET", "/ping", { ["Host"] = wrk.headers["Host"], ["x-user"] = "user-" .. n })
  end
end

function request()
  next_user = next_user % users + 1
  return requests[next_user]
end
