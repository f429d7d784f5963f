-- A private nginx for specs that run our Lua inside nginx's Lua module: the
-- LuaJIT core built through make (never a stale one), a temporary prefix
-- with a certificate nobody trusts (OWN_CERT, OWN_KEY), the http block's
-- placeholders filled in, and scenarios run over HTTP (support.scenario_runner
-- serves them in nginx).
--
--   local nginx = scenario_nginx.start { name = "cosocket", port = PORT, http = HTTP,
--                                         fill = { TLS_PORT = "...", ... } }
--   local result = nginx:scenario("exchange", { ... })
--   nginx.own_cert                  -- the untrusted certificate's file
--   nginx:stop()
local cjson = require("cjson").new()
local socket = require "socket"
local launcher = require "passage.emulator.launcher"
local emulator = require "support.emulator"
local shell = require "support.shell"

local M = {}

M.read_file = require("support.files").read

local Nginx = {}
Nginx.__index = Nginx

function Nginx:url(path)
  return "http://127.0.0.1:" .. self.port .. path
end

-- Runs a scenario; returns its result (raises with the error log when the
-- location fails).
function Nginx:scenario(name, params)
  params = params or {}
  params.scenario = name
  local status, body = emulator.request(self:url("/run"),
    { method = "POST", body = cjson.encode(params) })
  assert(status == 200, tostring(status) .. " " .. tostring(body) .. "\n" .. self.server:log_tail())
  return cjson.decode(body)
end

-- POSTs params to path with curl in the background: a request that stays
-- open while the spec does other things. Returns a function(seconds) that
-- waits for it: the status, the seconds it took and the body (nil when it
-- has not ended by then). curl's files are `file` and file.json, .body and
-- .err; once the request has ended and been read, they are removed.
function Nginx:post_in_background(path, params, file)
  local f = assert(io.open(file .. ".json", "w"))
  f:write(cjson.encode(params))
  f:close()
  assert(shell(string.format("(curl -s -o '%s.body' -w '%%{http_code} %%{time_total}' "
    .. "--data-binary @'%s.json' '%s' > '%s' 2>'%s.err' &)", file, file, self:url(path), file, file)))
  return function(seconds)
    local deadline = socket.gettime() + seconds
    while socket.gettime() < deadline do
      local s = M.read_file(file)
      local status, took = (s or ""):match("^(%d+) ([%d.]+)$")
      if status then
        local body = M.read_file(file .. ".body")
        for _, name in ipairs { file, file .. ".json", file .. ".body", file .. ".err" } do
          os.remove(name)
        end
        return tonumber(status), tonumber(took), body
      end
      socket.sleep(0.02)
    end
    return nil
  end
end

-- How long one /ping takes, in milliseconds (the location answers "pong").
function Nginx:ping_ms()
  local t0 = socket.gettime()
  local status, body = emulator.request(self:url("/ping"))
  assert(status == 200 and body == "pong", "ping: " .. tostring(status) .. " " .. tostring(body))
  return (socket.gettime() - t0) * 1000
end

function Nginx:log_tail(bytes)
  return self.server:log_tail(bytes)
end

function Nginx:stop()
  self.server:stop()
end

-- opts: name (of the prefix), port, http (the http block's body), fill
-- (placeholder -> text, besides REPO, CPATH, OWN_CERT and OWN_KEY, which
-- this fills). Longer placeholder names are filled first, so PORT never
-- eats into TLS_PORT.
function M.start(opts)
  -- (make's output is captured by shell() and dropped)
  assert(shell("make build LUA_VERSION=jit"), "could not build the LuaJIT core")
  local prefix = assert(launcher.temp_prefix(opts.name))
  local own_cert, own_key = prefix .. "/own_cert.pem", prefix .. "/own_key.pem"
  assert(shell(string.format("env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 2"
    .. " -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s'",
    own_key, own_cert)), "openssl could not make a certificate")
  local fill = { REPO = io.popen("pwd"):read("*l"), CPATH = launcher.luajit_cpath(),
    OWN_CERT = own_cert, OWN_KEY = own_key }
  for name, text in pairs(opts.fill or {}) do
    fill[name] = text
  end
  local names = {}
  for name in pairs(fill) do
    names[#names + 1] = name
  end
  table.sort(names, function(a, b)
    return #a > #b or (#a == #b and a < b)
  end)
  local http = opts.http
  for _, name in ipairs(names) do
    http = http:gsub(name, function() return fill[name] end)
  end
  local server = assert(launcher.start { prefix = prefix, port = opts.port, http = http,
    temporary = true })
  return setmetatable({ server = server, port = opts.port, own_cert = own_cert }, Nginx)
end

return M
