-- A private nginx with its Lua module, run from a fresh temporary prefix so
-- it never touches a system nginx: one worker, its own pid, logs and temp
-- paths. Used by the specs' test server and the OpenResty spec (the
-- emulator has its own control script, lua/passage/emulator/control.lua).
--
--   local prefix = private_nginx.new_prefix("name")
--   local server = private_nginx.start { prefix = prefix, port = 18790,
--                                        main = "...", http = "..." }
--   server:log_tail(); server:stop()
local socket = require "socket"

local M = {}

-- Started without a sanitizer runtime a checked run may have preloaded into
-- the interpreter (make asan): nginx is not the code under test.
local NGINX = "env -u LD_PRELOAD /usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"

function M.sh(cmd)
    local ok = os.execute(cmd)
    return ok == true or ok == 0
end

function M.read_file(path)
    local f = io.open(path, "r")
    if not f then
        return nil
    end
    local s = f:read("*a")
    f:close()
    return s
end

function M.port_open(port)
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok ~= nil
end

-- A new empty prefix with logs/, tmp/ and conf/.
function M.new_prefix(name)
    local tmp = os.tmpname()
    os.remove(tmp)
    local prefix = tmp .. "-" .. name
    assert(M.sh("mkdir -p '" .. prefix .. "/logs' '" .. prefix .. "/tmp' '" .. prefix .. "/conf'"))
    return prefix
end

local Server = {}
Server.__index = Server

function Server:log_tail()
    return (M.read_file(self.prefix .. "/logs/error.log") or ""):sub(-2000)
end

function Server:stop()
    local prefix = self.prefix
    if not prefix then
        return
    end
    self.prefix = nil
    local pid = tonumber(M.read_file(prefix .. "/logs/nginx.pid") or "")
    if pid then
        M.sh("kill -QUIT " .. pid .. " 2>/dev/null")
        for _ = 1, 100 do
            if not M.sh("kill -0 " .. pid .. " 2>/dev/null") then
                break
            end
            socket.sleep(0.05)
        end
    end
    M.sh("rm -rf '" .. prefix .. "'")
end

-- Writes the configuration (`main`: main-level directives; `http`: the body
-- of the http block, servers included), starts nginx and waits until `port`
-- answers. Raises with the error log when it does not.
function M.start(opts)
    local prefix, port = opts.prefix, opts.port
    assert(not M.port_open(port), "port " .. port .. " is already taken")
    local is_root = io.popen("id -u"):read("*l") == "0"
    local conf = table.concat({
        "load_module " .. MODULES .. "/ndk_http_module.so;",
        "load_module " .. MODULES .. "/ngx_http_lua_module.so;",
        is_root and "user root;" or "",
        "daemon on;",
        "master_process on;",
        "worker_processes 1;",
        opts.main or "",
        "pid " .. prefix .. "/logs/nginx.pid;",
        "error_log " .. prefix .. "/logs/error.log warn;",
        "events { worker_connections 512; }",
        "http {",
        "    access_log off;",
        "    client_body_temp_path " .. prefix .. "/tmp/body;",
        "    proxy_temp_path " .. prefix .. "/tmp/proxy;",
        "    fastcgi_temp_path " .. prefix .. "/tmp/fastcgi;",
        "    uwsgi_temp_path " .. prefix .. "/tmp/uwsgi;",
        "    scgi_temp_path " .. prefix .. "/tmp/scgi;",
        opts.http,
        "}",
        "",
    }, "\n")
    local f = assert(io.open(prefix .. "/conf/nginx.conf", "w"))
    f:write(conf)
    f:close()
    local server = setmetatable({ prefix = prefix, port = port }, Server)
    assert(M.sh(string.format("%s -p '%s' -c '%s/conf/nginx.conf' -e '%s/logs/error.log'",
        NGINX, prefix, prefix, prefix)), "nginx failed to start: " .. server:log_tail())
    for _ = 1, 100 do
        if M.port_open(port) then
            return server
        end
        socket.sleep(0.05)
    end
    local log = server:log_tail()
    server:stop()
    error("nginx did not start listening on port " .. port .. ": " .. log)
end

return M
