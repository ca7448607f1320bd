-- wrk script: POST a fixed JSON body with optional headers, then print one machine-readable
-- line "RESULT_JSON {...}" (rps, latency percentiles, status counts, socket errors).
-- Adapted from the anchors' wrk/post_json.lua; bench/wrk.py drives it.
--
-- Environment:
--   BODY_FILE     JSON file to POST; unset or empty: plain GETs (health endpoints)
--   BEARER_TOKEN  sent as "Authorization: Bearer <token>" (kept out of argv and `ps`)
--   WRK_HEADERS   extra headers, one "Name: value" per line
--
-- Every response goes through response() to count statuses exactly (wrk's own "status"
-- error only counts codes > 399). Counters are globals so done() can read them from each
-- thread with thread:get().
local path = os.getenv("BODY_FILE")
if path and path ~= "" then
  local f = assert(io.open(path, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  wrk.headers["Content-Type"] = "application/json"
  f:close()
end

local token = os.getenv("BEARER_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

for line in (os.getenv("WRK_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

statuses = {}
non2xx = 0

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local total_non2xx = 0
  local merged = {}
  for _, t in ipairs(threads) do
    total_non2xx = total_non2xx + (t:get("non2xx") or 0)
    for code, n in pairs(t:get("statuses") or {}) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do
    table.insert(parts, string.format('"%d":%d', code, n))
  end
  table.sort(parts)

  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'RESULT_JSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,' ..
    '"lat_mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,' ..
    '"non_2xx":%d,"statuses":{%s},' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, secs, summary.requests / secs,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    total_non2xx, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout))
end
