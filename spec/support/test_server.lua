-- A private nginx (with its Lua module) serving the odd responses the
-- transport must cope with: JSON, slow and dropped bodies, big bodies,
-- redirects, gzip. It runs from a fresh temporary prefix, so it never
-- touches a system nginx.
--
--   local server = require "support.test_server"
--   local base = server.start()   -- "http://127.0.0.1:18790"
--   ...
--   server.stop()
--
-- PASSAGE_TEST_SERVER_PORT overrides the port. When openssl is available the
-- same locations are also served over https on the next port, with a fresh
-- self-signed certificate for 127.0.0.1 (server.tls_url(), server.cert_file).

local M = {}

-- Started without a sanitizer runtime a checked run may have preloaded into
-- the interpreter (make asan): nginx is not the code under test.
local NGINX = "env -u LD_PRELOAD /usr/sbin/nginx"
local MODULES = "/usr/lib/nginx/modules"

local CONF = [[
load_module MODULES/ndk_http_module.so;
load_module MODULES/ngx_http_lua_module.so;
USER_LINE
daemon on;
master_process on;
worker_processes 1;
pid PREFIX/logs/nginx.pid;
error_log PREFIX/logs/error.log warn;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path PREFIX/tmp/body;
    proxy_temp_path PREFIX/tmp/proxy;
    fastcgi_temp_path PREFIX/tmp/fastcgi;
    uwsgi_temp_path PREFIX/tmp/uwsgi;
    scgi_temp_path PREFIX/tmp/scgi;
    lua_package_cpath "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
    keepalive_requests 10000;
    keepalive_timeout 60s;
    client_max_body_size 8m;
    gzip on;
    gzip_min_length 0;
    gzip_types application/json;
    default_type application/json;
    lua_shared_dict counts 1m;

    server {
        listen 127.0.0.1:PORT;
        TLS_LISTEN

        # A small JSON document.
        location = /json {
            content_by_lua_block {
                ngx.print('{"name":"alice","n":3,"list":[1,2,3],"ok":true}')
            }
        }

        # Describes the request it received, for header and body checks.
        location = /echo {
            content_by_lua_block {
                local cjson = require "cjson"
                ngx.req.read_body()
                local h = ngx.req.get_headers()
                ngx.print(cjson.encode({
                    method = ngx.req.get_method(),
                    body = ngx.req.get_body_data() or "",
                    content_length = h["content-length"] or "",
                    content_type = h["content-type"] or "",
                    expect = h["expect"] or "",
                    user_agent = h["user-agent"] or "",
                    accept_encoding = h["accept-encoding"] or "",
                    x_test = h["x-test"] or "",
                    connection = tonumber(ngx.var.connection),
                }))
            }
        }

        # Any status, with an optional Retry-After and a non-JSON body.
        location = /status {
            content_by_lua_block {
                local a = ngx.req.get_uri_args()
                ngx.status = tonumber(a.code) or 200
                ngx.header["Content-Type"] = "text/plain"
                if a.retry_after then ngx.header["Retry-After"] = a.retry_after end
                ngx.print(a.body or "slow down")
            }
        }

        # Answers after ms milliseconds.
        location = /slow {
            content_by_lua_block {
                ngx.sleep((tonumber(ngx.var.arg_ms) or 1000) / 1000)
                ngx.print('{"slow":true}')
            }
        }

        # Headers at once, the body trickling for ms milliseconds.
        location = /trickle {
            content_by_lua_block {
                local ms = tonumber(ngx.var.arg_ms) or 1000
                ngx.print('[')
                ngx.flush(true)
                for i = 1, 10 do
                    ngx.sleep(ms / 10000)
                    ngx.print(i == 1 and '1' or ',1')
                    ngx.flush(true)
                end
                ngx.print(']')
            }
        }

        # Promises 100 bytes, sends 10, then drops the connection.
        location = /drop {
            content_by_lua_block {
                ngx.header["Content-Length"] = 100
                ngx.print('{"partial"')
                ngx.flush(true)
                ngx.exit(ngx.ERROR)
            }
        }

        # Closes the connection without answering.
        location = /nothing {
            return 444;
        }

        # n bytes of JSON with a Content-Length.
        location = /big {
            content_by_lua_block {
                local n = tonumber(ngx.var.arg_n) or 1000
                local s = '"' .. string.rep("x", n - 2) .. '"'
                ngx.header["Content-Length"] = #s
                ngx.print(s)
            }
        }

        # n bytes of JSON, chunked (no Content-Length).
        location = /chunked {
            gzip off;
            content_by_lua_block {
                local n = tonumber(ngx.var.arg_n) or 1000
                ngx.print('"')
                local left = n - 2
                while left > 0 do
                    local k = math.min(left, 65536)
                    ngx.print(string.rep("y", k))
                    ngx.flush(true)
                    left = left - k
                end
                ngx.print('"')
            }
        }

        location = /redirect {
            return 302 /json;
        }

        # A compressible JSON array (gzip applies when the client asks).
        location = /gzip {
            content_by_lua_block {
                local t = {}
                for i = 1, 500 do t[i] = '{"id":' .. i .. ',"name":"user"}' end
                ngx.print('[' .. table.concat(t, ',') .. ']')
            }
        }

        location = /empty {
            return 204;
        }

        # /moved/<status>/<port>/<rest>: a redirect to http://127.0.0.1:<port>/<rest>.
        location ^~ /moved/ {
            content_by_lua_block {
                local code, port, rest = ngx.var.uri:match("^/moved/(%d+)/(%d+)(/.*)$")
                ngx.header["Location"] = "http://127.0.0.1:" .. port .. rest
                ngx.status = tonumber(code)
                ngx.print('{"moved":true}')
            }
        }

        # /raw/...: the request line and headers as they arrived, as the id of a
        # user (and an empty page and device list), so any call can read them.
        location ^~ /raw/ {
            content_by_lua_block {
                local cjson = require "cjson"
                ngx.req.read_body()
                ngx.print(cjson.encode({
                    user = { id = ngx.req.raw_header() },
                    users = {}, total_users = 0, page = 1, limit = 1, created_before = 0,
                    devices = {}, body = ngx.req.get_body_data() or "",
                }))
            }
        }

        # /hangup/...: GET answers a user (so the connection stays open for the
        # next request); any other method is counted, then the connection is
        # closed without an answer. /hangup-count reads and resets the count.
        location ^~ /hangup/ {
            content_by_lua_block {
                if ngx.req.get_method() == "GET" then
                    ngx.print('{"user":{"id":"u1"}}')
                    return
                end
                ngx.req.read_body()
                ngx.shared.counts:incr("hangup", 1, 0)
                ngx.exit(444)
            }
        }
        location = /hangup-count {
            content_by_lua_block {
                ngx.print(tostring(ngx.shared.counts:get("hangup") or 0))
                ngx.shared.counts:set("hangup", 0)
            }
        }
    }
}
]]

local function sh(cmd)
    local ok = os.execute(cmd)
    return ok == true or ok == 0
end

local function write_file(path, text)
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
end

local function read_file(path)
    local f = io.open(path, "r")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local function port_open(port)
    local socket = require "socket"
    local c = socket.tcp()
    c:settimeout(0.2)
    local ok = c:connect("127.0.0.1", port)
    c:close()
    return ok ~= nil
end

function M.port()
    return tonumber(os.getenv("PASSAGE_TEST_SERVER_PORT")) or 18790
end

function M.url(path)
    return "http://127.0.0.1:" .. M.port() .. (path or "")
end

-- nil when the server runs without TLS.
function M.tls_url(path)
    if not M.cert_file then return nil end
    return "https://127.0.0.1:" .. (M.port() + 1) .. (path or "")
end

-- Starts the server (once); returns its base URL.
function M.start()
    if M.prefix then return M.url() end
    local port = M.port()
    assert(not port_open(port), "port " .. port .. " is already taken")
    local tmp = os.tmpname()
    os.remove(tmp)
    local prefix = tmp .. "-nginx"
    assert(sh("mkdir -p '" .. prefix .. "/logs' '" .. prefix .. "/tmp' '" .. prefix .. "/conf'"))
    local is_root = (io.popen("id -u"):read("*l") == "0")
    local cert, key = prefix .. "/conf/cert.pem", prefix .. "/conf/key.pem"
    local tls = sh(string.format("env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes"
        .. " -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
        .. " -keyout '%s' -out '%s' >/dev/null 2>&1", key, cert))
    local tls_listen = tls and string.format("listen 127.0.0.1:%d ssl; ssl_certificate %s; "
        .. "ssl_certificate_key %s;", port + 1, cert, key) or ""
    local conf = CONF:gsub("TLS_LISTEN", tls_listen):gsub("MODULES", MODULES):gsub("PREFIX", prefix)
        :gsub("PORT", tostring(port)):gsub("USER_LINE", is_root and "user root;" or "")
    write_file(prefix .. "/conf/nginx.conf", conf)
    assert(sh(string.format("%s -p '%s' -c '%s/conf/nginx.conf' -e '%s/logs/error.log'",
        NGINX, prefix, prefix, prefix)), "nginx failed to start, see " .. prefix .. "/logs/error.log")
    M.prefix = prefix
    M.cert_file = tls and cert or nil
    local socket = require "socket"
    for _ = 1, 100 do
        if port_open(port) then return M.url() end
        socket.sleep(0.05)
    end
    M.stop()
    error("test server did not start listening on port " .. port)
end

function M.stop()
    local prefix = M.prefix
    if not prefix then return end
    M.prefix = nil
    M.cert_file = nil
    local pid = tonumber(read_file(prefix .. "/logs/nginx.pid") or "")
    if pid then
        sh("kill -QUIT " .. pid .. " 2>/dev/null")
        local socket = require "socket"
        for _ = 1, 100 do
            if not sh("kill -0 " .. pid .. " 2>/dev/null") then break end
            socket.sleep(0.05)
        end
    end
    sh("rm -rf '" .. prefix .. "'")
end

return M
