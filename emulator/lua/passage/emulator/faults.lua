-- Fault injection: a latency applied to every API request and a FIFO queue of
-- one-shot faults, each consumed by the next API request(s) (`count` times).
-- Faults are described to the handler as plain data; the nginx adapter performs
-- the parts that need the socket (delay, drop, trickle, headers_only).
local json = require("passage.emulator.json")

local M = {}

local BODY_KINDS = { not_json = true, html = true, huge = true, empty = true, deep = true,
  invalid_utf8 = true, wrong_types = true }
local KNOWN = { status = true, retry_after = true, count = true, drop = true, truncate = true,
  body = true, trickle_ms = true, chunk = true, headers_only = true, code = true, error = true,
  crash = true }
-- Faults named by a flag, described back as `<kind> = true`.
local FLAGS = { drop = true, truncate = true, headers_only = true, crash = true }

local function is_int(v, lo, hi)
  return type(v) == "number" and v == math.floor(v) and v >= lo and v <= hi
end

-- The kind of a fault, from its keys.
local function kind_of(f)
  if f.crash then return "crash" end
  if f.body ~= nil then return "body" end
  if f.drop then return "drop" end
  if f.truncate then return "truncate" end
  if f.trickle_ms ~= nil then return "trickle" end
  if f.headers_only then return "headers_only" end
  if f.status ~= nil then return "status" end
  return nil
end

-- Checks one fault from the admin request. Returns a normalised copy or nil, msg.
local function check(f, i)
  local where = "next[" .. i .. "]"
  if type(f) ~= "table" then return nil, where .. ": must be an object" end
  for k in pairs(f) do
    if type(k) ~= "string" or not KNOWN[k] then
      return nil, where .. ": unknown field " .. json.quote_name(k)
    end
  end
  local kind = kind_of(f)
  if not kind then
    return nil, where .. ": needs one of status, drop, truncate, body, trickle_ms, headers_only, crash"
  end
  local out = { kind = kind, count = 1 }
  if f.count ~= nil then
    if not is_int(f.count, 1, 1000000) then return nil, where .. ".count: must be a positive integer" end
    out.count = f.count
  end
  if f.status ~= nil then
    if not is_int(f.status, 100, 599) then return nil, where .. ".status: must be an HTTP status" end
    out.status = f.status
  end
  -- Stored now, sent later: only what a header or a JSON body can carry.
  if f.retry_after ~= nil then
    if type(f.retry_after) ~= "string" or not f.retry_after:find("^[\32-\126]+$")
        or #f.retry_after > 64 then
      return nil, where .. ".retry_after: must be 1-64 printable ASCII characters"
    end
    out.retry_after = f.retry_after
  end
  for _, k in ipairs({ "code", "error" }) do
    if f[k] ~= nil then
      if type(f[k]) ~= "string" or not json.valid_utf8(f[k]) or #f[k] > 1024 then
        return nil, where .. "." .. k .. ": must be a string of valid UTF-8 (at most 1024 bytes)"
      end
      out[k] = f[k]
    end
  end
  if kind == "body" then
    if not BODY_KINDS[f.body] then
      return nil, where .. ".body: must be one of not_json, html, huge, empty, deep, "
        .. "invalid_utf8, wrong_types"
    end
    out.body = f.body
  elseif kind == "trickle" then
    if not is_int(f.trickle_ms, 0, 60000) then return nil, where .. ".trickle_ms: must be 0..60000" end
    out.trickle_ms = f.trickle_ms
    out.chunk = 16
    if f.chunk ~= nil then
      if not is_int(f.chunk, 1, 1048576) then return nil, where .. ".chunk: must be a positive integer" end
      out.chunk = f.chunk
    end
  elseif kind == "status" and out.status < 400 then
    return nil, where .. ".status: must be an error status (>= 400)"
  end
  return out
end

-- Applies a POST /__emulator/faults body to the state's fault table.
-- Returns true or nil, message (then nothing was changed).
function M.configure(faults, body)
  if type(body) ~= "table" or (next(body) ~= nil and #body > 0) then
    return nil, "body: must be a JSON object"
  end
  for k in pairs(body) do
    if k ~= "latency_ms" and k ~= "next" and k ~= "clear" then
      return nil, json.quote_name(k) .. ": unknown field"
    end
  end
  local latency = body.latency_ms
  if latency ~= nil and not is_int(latency, 0, 600000) then
    return nil, "latency_ms: must be an integer 0..600000"
  end
  local add = {}
  if body.next ~= nil then
    if type(body.next) ~= "table" or (next(body.next) ~= nil and #body.next == 0) then
      return nil, "next: must be an array"
    end
    for i, f in ipairs(body.next) do
      local ok, err = check(f, i)
      if not ok then return nil, err end
      add[#add + 1] = ok
    end
  end
  if body.clear ~= nil and type(body.clear) ~= "boolean" then
    return nil, "clear: must be a boolean"
  end
  if body.clear then
    faults.latency_ms = 0
    faults.next = {}
  end
  if latency ~= nil then faults.latency_ms = latency end
  for _, f in ipairs(add) do faults.next[#faults.next + 1] = f end
  return true
end

-- Takes the fault for the request now arriving, or nil.
function M.take(faults)
  local head = faults.next[1]
  if not head then return nil end
  head.count = head.count - 1
  if head.count <= 0 then table.remove(faults.next, 1) end
  return head
end

-- The current state as JSON text (queue in the same shape as it was posted).
function M.describe(faults)
  local items = {}
  for i, f in ipairs(faults.next) do
    local o = {}
    for k, v in pairs(f) do if k ~= "kind" then o[k] = v end end
    if FLAGS[f.kind] then o[f.kind] = true end
    items[i] = o
  end
  return json.object_with({ latency_ms = faults.latency_ms }, { { "next", json.array(items) } })
end

local ERROR_CODES = {
  [400] = "invalid_request", [401] = "invalid_access_token", [403] = "operation_not_allowed",
  [404] = "not_found", [429] = "rate_limited",
}

-- Response for a {status=...} fault.
function M.status_response(f)
  local code = f.code or ERROR_CODES[f.status] or (f.status >= 500 and "internal_server_error")
    or "invalid_request"
  local headers = { ["Content-Type"] = "application/json" }
  if f.retry_after then headers["Retry-After"] = f.retry_after end
  return {
    status = f.status,
    headers = headers,
    body = json.encode({ code = code, error = f.error or ("injected fault: status " .. f.status) }),
  }
end

local huge_cache
local function huge_body()
  if not huge_cache then
    -- ~32 MiB of valid JSON: a users array of repeated small objects.
    local item = '{"id":"AAAAAAAAAAAAAAAAAAAAAAAA","email":"filler@example.com","login_count":1}'
    local n = math.floor(32 * 1024 * 1024 / (#item + 1))
    huge_cache = '{"users":[' .. string.rep(item .. ",", n - 1) .. item .. "]}"
  end
  return huge_cache
end

local HTML = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
  .. "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
  .. "</body>\r\n</html>\r\n"

local WRONG_TYPES = '{"user":{"created_at":1731923000,"email":false,"email_verified":"yes",'
  .. '"external_id":7,"id":12345,"last_login_at":[],"login_count":"twelve","phone":{},'
  .. '"phone_verified":"no","recent_events":{},"social_connections":[],"status":3,'
  .. '"updated_at":true,"user_metadata":"none","webauthn":"true","webauthn_devices":"none",'
  .. '"webauthn_types":7}}'

-- Replaces the response of a {body=...} fault.
function M.apply_body(f, resp)
  local kind = f.body
  local body, ctype
  ctype = "application/json"
  if kind == "not_json" then
    body, ctype = "this is not JSON: upstream said something else", "text/plain"
  elseif kind == "html" then
    body, ctype = HTML, "text/html"
  elseif kind == "huge" then
    body = huge_body()
  elseif kind == "empty" then
    body = ""
  elseif kind == "deep" then
    body = string.rep("[", 100000) .. string.rep("]", 100000)
  elseif kind == "invalid_utf8" then
    body = '{"user":{"id":"bad\255\254id","email":"caf\195@example.com","status":"active"}}'
  else
    body = WRONG_TYPES
  end
  resp.status = f.status or 200
  resp.headers = { ["Content-Type"] = ctype }
  resp.body = body
  return resp
end

return M
