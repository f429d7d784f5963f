-- Starts, stops and reports the emulator: nginx (through the launcher)
-- serving passage.emulator.nginx on 127.0.0.1:<port>. The passage-emulator
-- command, the specs and the benchmarks all go through here.
--
--   control.start { port = 8787, prefix = dir }   -> ok, message, started
--   control.stop { port = 8787, prefix = dir }    -> ok, message
--   control.status { port = 8787 }                -> up, message
--   control.run({ port = 8787 }, { "cmd", ... })  -> the command's exit code
--
-- Both options are optional: port defaults to PASSAGE_EMULATOR_PORT, then
-- 8787; prefix (nginx's configuration, pid file and logs) to a runtime
-- directory of the emulator's own, never a place in the Lua module path:
-- $XDG_RUNTIME_DIR/passage-emulator-<port>, else $TMPDIR (or /tmp)/passage-emulator-<port>.
local launcher = require("passage.emulator.launcher")

local M = {}

M.DEFAULT_PORT = 8787

local quote = launcher.quote

local function run(cmd)
  local ok, how, code = os.execute(cmd)
  if type(ok) == "number" then -- Lua 5.1: a wait status
    return ok % 256 == 0 and math.floor(ok / 256) or 128 + ok % 256
  end
  if how == "signal" then return 128 + code end
  return code or (ok and 0 or 1)
end

local function valid_port(p)
  return type(p) == "number" and p % 1 == 0 and p >= 1 and p <= 65535
end

function M.port()
  local p = tonumber(os.getenv("PASSAGE_EMULATOR_PORT") or "")
  if valid_port(p) then return math.floor(p) end
  return M.DEFAULT_PORT
end

function M.runtime_dir(port)
  local base = os.getenv("XDG_RUNTIME_DIR")
  if not base or base == "" or run("test -d " .. quote(base)) ~= 0 then
    base = os.getenv("TMPDIR")
    if not base or base == "" then base = "/tmp" end
  end
  return base .. "/passage-emulator-" .. port
end

local function options(opts)
  opts = opts or {}
  local port = opts.port or M.port()
  assert(valid_port(port), "emulator: port must be an integer 1..65535")
  return port, opts.prefix or M.runtime_dir(port)
end

-- Where the emulator on the port keeps its files (prefix: see above).
function M.paths(port, prefix)
  prefix = prefix or M.runtime_dir(port)
  local server = launcher.attach(prefix)
  return { prefix = prefix, conf = server.conf, pid = server.pid_file, log = server.log }
end

-- The directory of the module tree holding passage/emulator/ (a checkout's
-- emulator/lua, or an installed tree's share/lua/5.x), absolute: nginx's
-- LuaJIT loads the same files.
local function module_root()
  local file = debug.getinfo(1, "S").source:gsub("^@", "")
  local root = file:match("^(.*)/passage/emulator/[^/]*$") or "."
  if root:sub(1, 1) ~= "/" then
    local p = io.popen("cd " .. quote(root) .. " && pwd")
    root = p:read("*l")
    p:close()
  end
  return root
end

-- The http block: the API under /, the admin API under /__emulator/ for
-- loopback clients only, nginx's own refusals as JSON.
local function http_block(port)
  local root = module_root()
  return table.concat({
    "  server_tokens off;",
    "  keepalive_requests 1000000;",
    "  lua_package_path '" .. root .. "/?.lua;" .. root .. "/?/init.lua;;';",
    "  lua_package_cpath '" .. launcher.luajit_cpath() .. "';",
    "  init_by_lua_block { require('passage.emulator.nginx') }",
    "  server {",
    "    listen 127.0.0.1:" .. port .. " backlog=4096;",
    "    default_type application/json;",
    "    client_max_body_size 1m;",
    "    client_body_buffer_size 1m;",
    "    lua_need_request_body on;",
    "    large_client_header_buffers 4 16k;",
    -- error_page targets a URI, not a named location: a request refused while
    -- its request line was read has no URI to carry into a named location.
    "    error_page 400 403 404 405 408 411 413 414 494 500 502 503 504 /__nginx_error;",
    "    location = /__nginx_error {",
    "      internal;",
    "      content_by_lua_block { require('passage.emulator.nginx').nginx_error() }",
    "    }",
    "    location /__emulator/ {",
    "      allow 127.0.0.1;",
    "      deny all;",
    "      content_by_lua_block { require('passage.emulator.nginx').serve(true) }",
    "    }",
    "    location / {",
    "      content_by_lua_block { require('passage.emulator.nginx').serve(false) }",
    "    }",
    "  }",
  }, "\n")
end

local has_socket, socket = pcall(require, "socket")

-- True when GET /__emulator/stats answers 200 with the statistics on the
-- port: an emulator, not just anything listening there.
function M.answering(port)
  port = port or M.port()
  if has_socket then
    local c = socket.tcp()
    c:settimeout(0.5)
    if not c:connect("127.0.0.1", port) then
      c:close()
      return false
    end
    c:send("GET /__emulator/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    local reply = c:receive("*a")
    c:close()
    return reply ~= nil and reply:find("^HTTP/1%.%d 200") ~= nil and reply:find('"routes":', 1, true) ~= nil
  end
  return run("curl -fsS -m 1 http://127.0.0.1:" .. port .. "/__emulator/stats 2>/dev/null"
    .. " | grep -q '\"routes\":'") == 0
end

local function url(port)
  return "http://127.0.0.1:" .. port .. "/v1"
end

-- Starts the emulator unless one answers on the port already. Returns true,
-- message, started (false when it was running before), or nil, message.
function M.start(opts)
  local port, prefix = options(opts)
  if M.answering(port) then
    return true, "emulator already running at " .. url(port), false
  end
  -- A runtime directory in a shared place must be this user's own.
  if run("test -e " .. quote(prefix)) == 0 and run("test -O " .. quote(prefix)) ~= 0 then
    return nil, "emulator: " .. prefix .. " belongs to another user; pass --prefix"
  end
  if run("mkdir -p -m 700 " .. quote(prefix)) ~= 0 then
    return nil, "emulator: cannot create " .. prefix
  end
  local server, err = launcher.start {
    prefix = prefix, port = port, http = http_block(port), worker_connections = 4096,
  }
  if not server then return nil, "emulator: " .. err end
  for _ = 1, 100 do
    if M.answering(port) then
      return true, "emulator running at " .. url(port) .. " (pid " .. tostring(server:pid())
        .. "; logs " .. server.log .. ")", true
    end
    launcher.sleep(0.02)
  end
  local log = server:log_tail(600)
  server:stop()
  return nil, "emulator: not answering on port " .. port .. ": " .. log
end

-- Stops the emulator that runs from the prefix (the port's runtime
-- directory by default). Returns true, message or nil, message.
function M.stop(opts)
  local port, prefix = options(opts)
  local pid, err = launcher.attach(prefix):stop()
  if pid == nil then return nil, "emulator: " .. err end
  if not pid then return true, "emulator not running on port " .. port end
  return true, "emulator stopped (pid " .. pid .. ")"
end

function M.status(opts)
  local port, prefix = options(opts)
  if M.answering(port) then
    return true, "emulator running at " .. url(port) .. " (logs " .. M.paths(port, prefix).log .. ")"
  end
  return false, "emulator not running on port " .. port
end

-- Runs argv (a command and its arguments) with the emulator answering on
-- the port, stopping it afterwards only when this call started it. Returns
-- the command's exit code (1 when the emulator could not start).
function M.run(opts, argv)
  assert(type(argv) == "table" and argv[1], "emulator: run needs a command")
  local ok, message, started = M.start(opts)
  io.stderr:write(message, "\n")
  if not ok then return 1 end
  local words = {}
  for i, a in ipairs(argv) do words[i] = quote(a) end
  local code = run(table.concat(words, " "))
  if started then
    local stopped, stop_message = M.stop(opts)
    io.stderr:write(stop_message, "\n")
    if not stopped and code == 0 then code = 1 end
  end
  return code
end

return M
