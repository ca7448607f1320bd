-- wrk script: POST /v1/check with a fixed mix of two JSON bodies: every CRITICAL_EVERY-th
-- request (counted per wrk thread; bench/audit_overhead.py runs one thread, so exactly one in
-- CRITICAL_EVERY of all requests) sends CRITICAL_BODY_FILE, the others BODY_FILE.
-- Headers (bearer token, Content-Type), status counting and the "RESULT_JSON {...}" line come
-- from post_json.lua, loaded from POST_JSON_LUA; bench/audit_overhead.py drives it.
--
-- Environment:
--   POST_JSON_LUA       path of bench/post_json.lua
--   BODY_FILE           the ordinary body (e.g. calendar:view)
--   CRITICAL_BODY_FILE  the critical body (e.g. client:delete)
--   CRITICAL_EVERY      one request in N is critical (default 10)
--   BEARER_TOKEN        as in post_json.lua
dofile(assert(os.getenv("POST_JSON_LUA"), "POST_JSON_LUA is not set"))

local f = assert(io.open(assert(os.getenv("CRITICAL_BODY_FILE"), "CRITICAL_BODY_FILE is not set"), "rb"))
local critical_body = f:read("*a")
f:close()
local every = tonumber(os.getenv("CRITICAL_EVERY") or "10")
local ordinary_req = nil
local critical_req = nil
local sent = 0

function init(args)
  ordinary_req = wrk.format("POST", nil, nil, wrk.body)
  critical_req = wrk.format("POST", nil, nil, critical_body)
end

function request()
  sent = sent + 1
  if sent % every == 0 then return critical_req end
  return ordinary_req
end
