-- Runs a private nginx with its Lua module from a prefix directory of its
-- own (configuration, pid file, logs, temp paths), one worker, so it never
-- touches a system nginx. The emulator and every test server of the specs
-- start nginx through here.
--
--   local launcher = require "passage.emulator.launcher"
--   local server, err = launcher.start {
--     prefix = dir,              -- created when missing: conf/, logs/, tmp/
--     port = 18790,              -- start returns once it accepts connections
--     http = "server { ... }",   -- the body of the http block
--     main = "thread_pool ...;", -- main-level directives (optional)
--     worker_connections = 512,  -- (optional)
--     temporary = true,          -- stop() removes the prefix (optional)
--   }
--   server:log_tail(); server:stop()
--   launcher.attach(prefix)      -- the server running from prefix, if any
--   launcher.temp_prefix(name)   -- a fresh directory for a temporary server
--
-- Runtime failures return nil, message; bad arguments raise.
local M = {}

local has_socket, socket = pcall(require, "socket")

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = quote

local function run(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end -- Lua 5.1
  return ok == true and (code == nil or code == 0)
end

local function capture(cmd)
  local p = io.popen(cmd)
  if not p then return nil end
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- A daemon's parent is init, which may take its time to reap it: an exited
-- process is gone once /proc shows it as a zombie ("Z"), or not at all.
local function alive(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat then return not stat:match("^%d+ %b() Z") end
  return run("kill -0 " .. pid .. " 2>/dev/null")
end

function M.sleep(seconds)
  if has_socket and socket.sleep then
    socket.sleep(seconds)
  else
    run("sleep " .. seconds)
  end
end

-- True when something accepts TCP connections on 127.0.0.1:port.
function M.port_open(port)
  if has_socket then
    local c = socket.tcp()
    c:settimeout(0.5)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok ~= nil
  end
  return run("bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port .. "' 2>/dev/null")
end

local function is_root()
  return capture("id -u") == "0"
end

local function nginx_binary()
  return exists("/usr/sbin/nginx") and "/usr/sbin/nginx" or "nginx"
end

-- The directory holding ngx_http_lua_module.so (Debian's, or another layout).
function M.modules_dir()
  for _, d in ipairs({ "/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/etc/nginx/modules",
    "/usr/local/nginx/modules" }) do
    if exists(d .. "/ngx_http_lua_module.so") then return d end
  end
  return "/usr/lib/nginx/modules"
end

-- lua_package_cpath entries where nginx's LuaJIT finds lua-cjson (Debian
-- installs it per architecture), ending in ";;" (nginx's defaults).
function M.luajit_cpath()
  local dirs = {}
  local arch = capture("dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null")
  if not arch or arch == "" then arch = capture("gcc -print-multiarch 2>/dev/null") end
  if arch and arch ~= "" then dirs[#dirs + 1] = "/usr/lib/" .. arch .. "/lua/5.1" end
  dirs[#dirs + 1] = "/usr/local/lib/lua/5.1"
  dirs[#dirs + 1] = "/usr/lib/lua/5.1"
  local parts = {}
  for _, d in ipairs(dirs) do
    if exists(d .. "/cjson.so") then parts[#parts + 1] = d .. "/?.so;" end
  end
  return table.concat(parts) .. ";"
end

-- A new empty directory for a temporary server.
function M.temp_prefix(name)
  local tmp = os.tmpname()
  os.remove(tmp)
  local prefix = tmp .. "-" .. name
  if not run("mkdir -p " .. quote(prefix)) then return nil, "cannot create " .. prefix end
  return prefix
end

local Server = {}
Server.__index = Server

local function server_at(prefix, port)
  return setmetatable({
    prefix = prefix,
    port = port,
    conf = prefix .. "/conf/nginx.conf",
    pid_file = prefix .. "/logs/nginx.pid",
    log = prefix .. "/logs/error.log",
  }, Server)
end

function M.attach(prefix)
  return server_at(prefix)
end

-- The master's pid, when it runs from this prefix. A pid file left behind by
-- a crash may name a process that is now something else: where /proc is
-- there, its command line must name this prefix (nginx keeps -p in it).
function Server:pid()
  local pid = tonumber((read_file(self.pid_file) or ""):match("%d+"))
  if not pid or not alive(pid) then return nil end
  if exists("/proc/self/cmdline") then
    local cmdline = read_file("/proc/" .. pid .. "/cmdline")
    local args = cmdline and (cmdline:gsub("%z", " ") .. " ")
    if not args or not args:find(" -p " .. self.prefix .. " ", 1, true) then return nil end
  end
  return pid
end

function Server:log_tail(bytes)
  return (read_file(self.log) or ""):sub(-(bytes or 2000))
end

local function wait_gone(pid, seconds)
  for _ = 1, seconds * 50 do
    if not alive(pid) then return true end
    M.sleep(0.02)
  end
  return false
end

-- Stops nginx (a fast shutdown: the servers here hold nothing worth a
-- graceful one) and waits for it to exit. Returns the pid it stopped (false
-- when nothing ran), or nil, message.
function Server:stop()
  local pid = self:pid()
  if pid then
    run("kill -TERM " .. pid .. " 2>/dev/null")
    if not wait_gone(pid, 10) then return nil, "nginx (pid " .. pid .. ") did not exit" end
  end
  if self.temporary then run("rm -rf " .. quote(self.prefix)) end
  return pid or false
end

local function config(server, opts)
  local p = server.prefix
  return table.concat({
    "# Written by passage.emulator.launcher at every start.",
    "load_module " .. M.modules_dir() .. "/ndk_http_module.so;",
    "load_module " .. M.modules_dir() .. "/ngx_http_lua_module.so;",
    is_root() and "user root;" or "",
    "daemon on;",
    "master_process on;",
    "worker_processes 1;",
    "pid " .. server.pid_file .. ";",
    "error_log " .. server.log .. " warn;",
    opts.main or "",
    "events { worker_connections " .. (opts.worker_connections or 1024) .. "; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path " .. p .. "/tmp/body;",
    "  proxy_temp_path " .. p .. "/tmp/proxy;",
    "  fastcgi_temp_path " .. p .. "/tmp/fastcgi;",
    "  uwsgi_temp_path " .. p .. "/tmp/uwsgi;",
    "  scgi_temp_path " .. p .. "/tmp/scgi;",
    opts.http,
    "}",
    "",
  }, "\n")
end

-- Writes the configuration, starts nginx and waits until the port accepts
-- connections. Returns the server, or nil, message (with the error log).
function M.start(opts)
  assert(type(opts) == "table", "launcher.start: options table expected")
  assert(type(opts.prefix) == "string" and opts.prefix:sub(1, 1) == "/",
    "launcher.start: prefix must be an absolute path")
  assert(type(opts.port) == "number" and opts.port % 1 == 0 and opts.port >= 1 and opts.port <= 65535,
    "launcher.start: port must be an integer 1..65535")
  assert(type(opts.http) == "string", "launcher.start: http must be a string")
  local server = server_at(opts.prefix, opts.port)
  server.temporary = opts.temporary
  local function fail(message)
    server:stop() -- and a temporary prefix goes with it
    return nil, message
  end
  if M.port_open(opts.port) then
    if opts.temporary then run("rm -rf " .. quote(opts.prefix)) end
    return nil, "port " .. opts.port .. " is already taken"
  end
  if not run("mkdir -p " .. quote(opts.prefix .. "/conf") .. " " .. quote(opts.prefix .. "/logs")
      .. " " .. quote(opts.prefix .. "/tmp")) then
    return fail("cannot create " .. opts.prefix)
  end
  local f, err = io.open(server.conf, "w")
  if not f then return fail(err) end
  f:write(config(server, opts))
  f:close()
  -- Started without a sanitizer runtime a checked run may have preloaded
  -- into the interpreter (make asan): nginx is not the code under test.
  if not run(string.format("env -u LD_PRELOAD %s -q -p %s -c %s -e %s", nginx_binary(),
      quote(opts.prefix), quote(server.conf), quote(server.log))) then
    return fail("nginx failed to start (" .. server.log .. "): " .. server:log_tail(600))
  end
  for _ = 1, 200 do
    if M.port_open(opts.port) then return server end
    M.sleep(0.025)
  end
  return fail("nginx did not start listening on port " .. opts.port .. ": " .. server:log_tail(600))
end

return M
