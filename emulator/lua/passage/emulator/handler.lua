-- Request handling of the Passage API emulator, free of any nginx dependency:
--
--   local resp = handler.handle(state, req)
--   req  = { method = "GET", path = "/v1/apps/x/users" (undecoded, no query),
--            query = "page=2" (raw) or nil, headers = { authorization = ... }
--            (lower-cased names), body = string or nil }
--   resp = { status = 200, headers = { ["Content-Type"] = ... }, body = "...",
--            delay_ms = n (latency to add before answering, optional),
--            fault = { kind = "drop"|"trickle"|"headers_only", ... } (optional),
--            log = "..." (for the server's error log, optional) }
--
-- state comes from store.new(). The routes and what each one does are in
-- routes.lua; here: matching a request to a route, the rules of the API and
-- admin areas, faults, statistics, and turning any failure into a 500. The
-- adapter (nginx.lua) sleeps for delay_ms, carries out resp.fault and logs
-- resp.log. All choices about defaults, check order and semantics are written
-- down in README.md, section "Decisions".
local json = require("passage.emulator.json")
local url = require("passage.emulator.url")
local faults = require("passage.emulator.faults")
local reply = require("passage.emulator.reply")
local routes = require("passage.emulator.routes")

local M = {}

local ADMIN = "/__emulator"

local function is_admin(path)
  return path == ADMIN or path:sub(1, #ADMIN + 1) == ADMIN .. "/"
end

-- The routes, compiled: template segments (a name for a {parameter}, else
-- the literal) grouped by segment count, each with the name the statistics
-- use ("GET /apps/{app_id}/users": API paths without /v1).
local BY_LENGTH = {}
for _, r in ipairs(routes) do
  local method, path, action = r[1], r[2], r[3]
  local segs, n = url.split_path(path)
  local route = {
    method = method, path = path, action = action, n = n, literal = {}, param = {},
    admin = is_admin(path), stats_path = (path:gsub("^/v1/", "/")),
  }
  for i = 1, n do
    local name = segs[i]:match("^{([%w_]+)}$")
    if name then route.param[i] = name else route.literal[i] = segs[i] end
  end
  route.name = method .. " " .. route.stats_path
  BY_LENGTH[n] = BY_LENGTH[n] or {}
  table.insert(BY_LENGTH[n], route)
end

-- The parameters when the decoded segments fit the route, else nil.
local function fit(route, segs)
  local params = {}
  for i = 1, route.n do
    local name = route.param[i]
    if name then
      if segs[i] == "" then return nil end
      params[name] = segs[i]
    elseif segs[i] ~= route.literal[i] then
      return nil
    end
  end
  return params
end

-- Matches a request: route, params when one fits; else nil, nil and, when
-- the path fits with other methods, the sorted methods and that path's route
-- name for this method.
local function match(method, path)
  local segs, n = url.split_path(path)
  local allowed, other
  for _, route in ipairs(BY_LENGTH[n] or {}) do
    local params = fit(route, segs)
    if params then
      if route.method == method then return route, params end
      allowed = allowed or {}
      allowed[#allowed + 1] = route.method
      other = route
    end
  end
  if allowed then
    table.sort(allowed)
    return nil, nil, allowed, method .. " " .. other.stats_path
  end
  return nil
end

local function bearer(headers)
  local h = headers and headers.authorization
  if type(h) ~= "string" then return nil end
  return h:match("^[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+(%S+)[ \t]*$")
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

-- Answers one request: the area's rules, then the route's action.
local function dispatch(state, req, route, params, allowed, crash)
  if crash then error("injected crash") end
  if not route then
    if allowed then
      return reply.error(405, "method_not_allowed", "Method not allowed",
        { Allow = table.concat(allowed, ", ") })
    end
    if is_admin(req.path or "/") then return reply.error(404, "not_found", "No such admin endpoint") end
    return reply.error(404, "not_found", "No such endpoint")
  end
  local ctx = { state = state, req = req, params = params }
  if params.app_id then
    ctx.app = state.apps[params.app_id]
    if not ctx.app then return reply.error(404, "app_not_found", "App not found") end
    if bearer(req.headers) ~= ctx.app.key then
      return reply.error(401, "invalid_access_token", "Invalid access token")
    end
  end
  if params.user_id then
    ctx.user = ctx.app.users[params.user_id]
    if not ctx.user then return reply.error(404, "user_not_found", "User not found") end
  end
  if route.admin and req.method == "POST" then
    local body, msg = admin_body(req.body)
    if not body then return reply.invalid(msg) end
    ctx.body = body
  end
  return route.action(ctx)
end

-- dispatch, with any error turned into a logged 500.
local function answer(state, req, route_name, ...)
  local ok, resp = xpcall(dispatch, debug.traceback, state, req, ...)
  if ok then return resp end
  return reply.internal(req, route_name, resp)
end

-- Entry point. Never raises for any input; an internal error becomes a 500
-- with a JSON body (and is a bug).
function M.handle(state, req)
  local path = req.path or "/"
  local route, params, allowed, other = match(req.method, path)
  local route_name = route and route.name or other or "<unmatched>"
  if is_admin(path) then
    return answer(state, req, route_name, route, params, allowed)
  end

  local fault = faults.take(state.faults)
  local resp
  if fault and fault.kind == "status" then
    resp = faults.status_response(fault)
  else
    local kind = fault and fault.kind
    resp = answer(state, req, route_name, route, params, allowed, kind == "crash")
    if kind == "body" then
      faults.apply_body(fault, resp)
    elseif kind == "truncate" then
      resp.body = resp.body:sub(1, math.floor(#resp.body / 2))
    elseif kind and kind ~= "crash" then
      resp.fault = fault -- carried out by the adapter, on the connection
    end
  end
  state:count(route_name, resp.status)
  local delay = state.faults.latency_ms
  if delay > 0 then resp.delay_ms = delay end
  return resp
end

return M
