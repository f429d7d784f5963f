-- The thin nginx adapter: turns an ngx request into the plain table the handler
-- takes, and writes the handler's answer back, carrying out the faults that need
-- the connection itself (latency, drop, trickle, headers_only). This is the only
-- module of the emulator that touches `ngx`.
--
-- nginx runs one worker, so the state below (module-level) is the single copy
-- of every app and user for the whole server.
local handler = require("passage.emulator.handler")
local reply = require("passage.emulator.reply")
local store = require("passage.emulator.store")
local json = require("passage.emulator.json")

local M = {}

local state = store.new({ clock = ngx.now })
M.state = state

local function read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  -- Bodies are kept in memory (client_body_buffer_size = client_max_body_size),
  -- but read a spilled file rather than lose data if that setting changes.
  local file = ngx.req.get_body_file()
  if file then
    local f = io.open(file, "rb")
    if f then
      body = f:read("*a")
      f:close()
      return body
    end
  end
  return nil
end

local function request_headers()
  local h = ngx.req.get_headers(100)
  local out = {}
  for k, v in pairs(h) do
    if type(v) == "table" then v = v[1] end
    out[k] = v
  end
  return out
end

-- Closes the connection without finishing the response (nginx's 444).
local function close_abruptly()
  ngx.flush(true)
  return ngx.exit(444)
end

local function send(resp)
  ngx.status = resp.status
  for k, v in pairs(resp.headers or {}) do ngx.header[k] = v end
  local body = resp.body or ""
  local fault = resp.fault
  if not fault then
    ngx.header["Content-Length"] = #body
    ngx.print(body)
    return
  end
  local kind = fault.kind
  if kind == "trickle" then
    ngx.header["Content-Length"] = #body
    ngx.send_headers()
    local chunk, pause = fault.chunk, fault.trickle_ms / 1000
    for i = 1, #body, chunk do
      ngx.print(body:sub(i, i + chunk - 1))
      ngx.flush(true)
      if i + chunk <= #body and pause > 0 then ngx.sleep(pause) end
    end
    return
  end
  -- drop / headers_only: promise the full length, deliver less. An empty body
  -- (delete, revoke) is stood in for by "{}" so that something is missing.
  if body == "" then body = "{}" end
  ngx.header["Content-Length"] = #body
  ngx.send_headers()
  if kind == "drop" then
    ngx.print(body:sub(1, math.floor(#body / 2)))
  end
  return close_abruptly()
end

-- content_by_lua entry. admin_location is true only in the loopback-restricted
-- /__emulator/ location: a raw path that names the admin area but was routed
-- elsewhere by nginx's normalisation ("/__emulator/../v1") is refused.
function M.serve(admin_location)
  local uri = ngx.var.request_uri or "/"
  local path, query = uri:match("^([^?]*)%??(.*)$")
  local is_admin_path = path:sub(1, 11) == "/__emulator"
  local resp
  if is_admin_path ~= (admin_location == true) then
    resp = reply.error(404, "not_found", "No such endpoint")
  else
    local ok, r = pcall(handler.handle, state, {
      method = ngx.req.get_method(),
      path = path,
      query = query,
      headers = request_headers(),
      body = read_body(),
    })
    -- handle() never raises; should it, the answer is the same logged 500
    resp = ok and r or reply.internal({ method = ngx.req.get_method() }, path, r)
  end
  if resp.log then ngx.log(ngx.ERR, resp.log) end
  if resp.delay_ms then ngx.sleep(resp.delay_ms / 1000) end
  return send(resp)
end

-- Errors produced by nginx itself (body too large, bad request, forbidden...)
-- arrive here through error_page, so that they too carry a {code, error} body.
local NGINX_CODES = {
  [400] = "invalid_request", [403] = "forbidden", [404] = "not_found",
  [405] = "method_not_allowed", [408] = "request_timeout", [411] = "invalid_request",
  [413] = "request_too_large", [414] = "invalid_request", [494] = "invalid_request",
}

function M.nginx_error()
  local status = tonumber(ngx.var.status) or 500
  if status == 494 then status = 431 end
  local code = NGINX_CODES[status] or (status >= 500 and "internal_server_error" or "invalid_request")
  local body = json.encode({ code = code, error = "nginx: request refused with status " .. status })
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.print(body)
end

return M
