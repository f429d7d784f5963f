-- Request handling of the Passage API emulator, free of any nginx dependency:
--
--   local resp = handler.handle(state, req)
--   req  = { method = "GET", path = "/v1/apps/x/users" (undecoded, no query),
--            query = "page=2" (raw) or nil, headers = { authorization = ... }
--            (lower-cased names), body = string or nil }
--   resp = { status = 200, headers = { ["Content-Type"] = ... }, body = "...",
--            delay_ms = n (latency to add before answering, optional),
--            fault = { kind = "drop"|"trickle"|"headers_only", ... } (optional) }
--
-- state comes from store.new(). The adapter (nginx.lua) sleeps for delay_ms and
-- carries out resp.fault; everything else is decided here. All choices about
-- defaults, check order and semantics are written down in README.md, section
-- "Decisions".
local json = require("passage.emulator.json")
local url = require("passage.emulator.url")
local store = require("passage.emulator.store")
local render = require("passage.emulator.render")
local validate = require("passage.emulator.validate")
local listing = require("passage.emulator.listing")
local faults = require("passage.emulator.faults")
local seed = require("passage.emulator.seed")

local M = {}

local JSON_HEADERS = { ["Content-Type"] = "application/json" }

local function reply(status, body)
  return { status = status, headers = JSON_HEADERS, body = body or "" }
end

local function err(status, code, message, extra_headers)
  local r = reply(status, json.encode({ code = code, error = message }))
  if extra_headers then
    local h = { ["Content-Type"] = "application/json" }
    for k, v in pairs(extra_headers) do h[k] = v end
    r.headers = h
  end
  return r
end
M.error_response = err

local function invalid(message) return err(400, "invalid_request", message) end

-- The answer to a failure inside the emulator (a bug, or an injected crash):
-- a 500 whose body says nothing about the server, the cause in resp.log for
-- the adapter to write to the server's error log.
local function internal_error(req, template, cause)
  local r = err(500, "internal_server_error", "internal error in the emulator")
  r.log = "emulator: " .. tostring(req.method) .. " " .. tostring(template) .. ": " .. tostring(cause)
  return r
end

-- Renders a changed user and only then stores it (new user when old is nil),
-- so a user that cannot be rendered is never stored. Returns the rendered
-- {"user": ...} body.
local function commit(app, old, new)
  local body = render.user_response(new)
  render.item(new)
  if old == nil then
    store.insert(app, new)
  elseif new ~= old then
    store.replace(app, old, new)
  end
  return body
end

-- Route table for the API, relative to /v1. Each template lists the methods it
-- answers; a path that matches with another method gets a 405.
local ROUTES = {
  users = "/apps/{app_id}/users",
  user = "/apps/{app_id}/users/{user_id}",
  activate = "/apps/{app_id}/users/{user_id}/activate",
  deactivate = "/apps/{app_id}/users/{user_id}/deactivate",
  devices = "/apps/{app_id}/users/{user_id}/devices",
  device = "/apps/{app_id}/users/{user_id}/devices/{device_id}",
  tokens = "/apps/{app_id}/users/{user_id}/tokens",
}
local METHODS = {
  users = { GET = true, POST = true },
  user = { GET = true, PATCH = true, DELETE = true },
  activate = { PATCH = true },
  deactivate = { PATCH = true },
  devices = { GET = true },
  device = { DELETE = true },
  tokens = { DELETE = true },
}

-- Matches decoded segments {"", "v1", "apps", app, "users", ...}. Returns the
-- route name and its parameters, or nil. Empty parameters never match.
local function match(segs, n)
  if n < 5 or segs[1] ~= "" or segs[2] ~= "v1" or segs[3] ~= "apps" or segs[5] ~= "users" then
    return nil
  end
  local app_id, user_id = segs[4], segs[6]
  if app_id == "" then return nil end
  if n == 5 then return "users", app_id end
  if user_id == "" then return nil end
  if n == 6 then return "user", app_id, user_id end
  local sub = segs[7]
  if n == 7 then
    if sub == "activate" or sub == "deactivate" or sub == "devices" or sub == "tokens" then
      return sub, app_id, user_id
    end
    return nil
  end
  if n == 8 and sub == "devices" and segs[8] ~= "" then
    return "device", app_id, user_id, segs[8]
  end
  return nil
end

local function bearer(headers)
  local h = headers and headers.authorization
  if type(h) ~= "string" then return nil end
  return h:match("^[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+(%S+)[ \t]*$")
end

-- One API request, already routed. Returns a response.
local function api(state, req, name, app_id, user_id, device_id)
  local method = req.method
  local app = state.apps[app_id]
  if not app then return err(404, "app_not_found", "App not found") end
  if bearer(req.headers) ~= app.key then
    return err(401, "invalid_access_token", "Invalid access token")
  end

  if name == "users" then
    if method == "GET" then
      local r, msg = listing.parse(req.query, state.clock())
      if not r then return invalid(msg) end
      return reply(200, listing.respond(app, r))
    end
    local body, msg = validate.user_body(req.body, false)
    if not body then return invalid(msg) end
    local u
    u, msg = state:new_user(app, body)
    if not u then return invalid(msg) end
    return reply(201, commit(app, nil, u))
  end

  local u = app.users[user_id]
  if not u then return err(404, "user_not_found", "User not found") end

  if name == "user" then
    if method == "GET" then return reply(200, render.user_response(u)) end
    if method == "DELETE" then
      store.remove(app, u)
      return reply(200, "")
    end
    local body, msg = validate.user_body(req.body, true)
    if not body then return invalid(msg) end
    local changed
    changed, msg = state:updated_user(app, u, body)
    if not changed then return invalid(msg) end
    return reply(200, commit(app, u, changed))
  elseif name == "activate" then
    return reply(200, commit(app, u, state:with_status(u, "active")))
  elseif name == "deactivate" then
    return reply(200, commit(app, u, state:with_status(u, "inactive")))
  elseif name == "devices" then
    return reply(200, render.devices_response(u))
  elseif name == "device" then
    local d, index = store.find_device(u, device_id)
    if not d then return err(404, "device_not_found", "Device not found") end
    commit(app, u, state:without_device(u, index))
    return reply(200, "")
  else -- tokens
    store.revoke_tokens(u)
    return reply(200, "")
  end
end

-- Routes an API request and returns resp, route template (for statistics).
local function route_api(state, req)
  local segs, n = url.split_path(req.path)
  local name, app_id, user_id, device_id = match(segs, n)
  local method = req.method
  if not name then
    return err(404, "not_found", "No such endpoint"), "<unmatched>"
  end
  local template = method .. " " .. ROUTES[name]
  if req.crash then error("injected crash") end
  if not METHODS[name][method] then
    local allow = {}
    for m in pairs(METHODS[name]) do allow[#allow + 1] = m end
    table.sort(allow)
    return err(405, "method_not_allowed", "Method not allowed",
      { Allow = table.concat(allow, ", ") }), template
  end
  return api(state, req, name, app_id, user_id, device_id), template
end

-- Decodes an optional admin JSON body: nil body -> {}.
local function admin_body(body)
  if body == nil or body == "" then return {} end
  if not body:find("^%s*{") then return nil, "body: must be a JSON object" end
  local v, e = json.decode(body)
  if type(v) ~= "table" or (next(v) ~= nil and #v > 0) then
    return nil, "body: must be a JSON object" .. (e and " (" .. e:sub(1, 80) .. ")" or "")
  end
  return v
end

local function stats_json(state)
  return json.encode(state.stats)
end

local function app_names(state)
  local names = {}
  for id in pairs(state.apps) do names[#names + 1] = id end
  table.sort(names)
  return names
end

local function admin(state, req, segs, n)
  local what = segs[3]
  local method = req.method
  if what == "stats" and n == 3 and method == "GET" then
    return reply(200, stats_json(state))
  end
  if what == "faults" and n == 3 and method == "GET" then
    return reply(200, faults.describe(state.faults))
  end
  if method ~= "POST" then
    return err(405, "method_not_allowed", "Method not allowed")
  end
  local body, msg = admin_body(req.body)
  if not body then return invalid(msg) end

  if what == "stats" and n == 4 and segs[4] == "reset" then
    state:reset_stats()
    return reply(200, stats_json(state))
  end
  if n ~= 3 then return err(404, "not_found", "No such admin endpoint") end

  if what == "reset" then
    if body.empty ~= nil and type(body.empty) ~= "boolean" then
      return invalid("empty: must be a boolean")
    end
    state:reset(body.empty == true)
    return reply(200, json.object_with({ ok = true }, { { "apps", json.array(app_names(state)) } }))
  elseif what == "apps" then
    local id, key = body.app_id, body.api_key
    if type(id) ~= "string" or not id:find("^[%w_%-%.]+$") or #id > 128 then
      return invalid("app_id: must be 1-128 characters of letters, digits, '_', '-', '.'")
    end
    if type(key) ~= "string" or not key:find("^[\33-\126]+$") or #key > 512 then
      return invalid("api_key: must be a non-empty string of printable characters")
    end
    local _, created = state:add_app(id, key)
    return reply(created and 201 or 200, json.encode({ app_id = id, api_key = key }))
  elseif what == "seed" then
    local app = type(body.app_id) == "string" and state.apps[body.app_id]
    if type(body.app_id) ~= "string" then return invalid("app_id: must be a string") end
    if not app then return err(404, "app_not_found", "App not found") end
    local count = body.count
    if not validate.is_integer(count) or count < 0 or count > 2000000 then
      return invalid("count: must be an integer 0..2000000")
    end
    local s = body.seed
    if s ~= nil and not (validate.is_integer(s) and s >= 0 and s < 2^31) then
      return invalid("seed: must be an integer 0..2147483647")
    end
    local t0 = os.clock()
    seed.run(state, app, count, s)
    local users = 0
    for _ in pairs(app.users) do users = users + 1 end
    return reply(200, json.encode({
      app_id = app.id, created = count, total_users = users,
      seconds = math.floor((os.clock() - t0) * 1000 + 0.5) / 1000,
    }))
  elseif what == "faults" then
    local ok, ferr = faults.configure(state.faults, body)
    if not ok then return invalid(ferr) end
    return reply(200, faults.describe(state.faults))
  end
  return err(404, "not_found", "No such admin endpoint")
end

-- Entry point. Never raises for any input; an internal error becomes a 500
-- with a JSON body (and is a bug).
function M.handle(state, req)
  local path = req.path or "/"
  if path:sub(1, 12) == "/__emulator/" or path == "/__emulator" then
    local segs, n = url.split_path(path)
    local ok, resp = xpcall(admin, debug.traceback, state, req, segs, n)
    if not ok then return internal_error(req, path, resp) end
    return resp
  end

  local fault = faults.take(state.faults)
  local delay = state.faults.latency_ms
  local resp, template
  if fault and fault.kind == "status" then
    local segs, n = url.split_path(path)
    local name = match(segs, n)
    template = name and (req.method .. " " .. ROUTES[name]) or "<unmatched>"
    resp = faults.status_response(fault)
  else
    local api_req = req
    if fault and fault.kind == "crash" then
      api_req = setmetatable({ crash = true }, { __index = req })
    end
    local ok, r, t = xpcall(route_api, debug.traceback, state, api_req)
    if ok then
      resp, template = r, t
    else
      template = M.template(req.method, path) or "<unmatched>"
      resp = internal_error(req, template, r)
    end
    if fault and fault.kind ~= "crash" then
      if fault.kind == "body" then
        faults.apply_body(fault, resp)
      elseif fault.kind == "truncate" then
        resp.body = resp.body:sub(1, math.floor(#resp.body / 2))
      else
        resp.fault = fault
      end
    end
  end
  state:count(template, resp.status)
  if delay > 0 then resp.delay_ms = delay end
  return resp
end

-- Route template of a path, for callers that want to read the statistics.
function M.template(method, path)
  local segs, n = url.split_path(path)
  local name = match(segs, n)
  return name and (method .. " " .. ROUTES[name]) or nil
end

return M
