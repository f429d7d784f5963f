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

local launcher = require "passage.emulator.launcher"

-- The body of the http block; PORT and TLS_LISTEN are filled in at start.
local HTTP = [[
    lua_package_cpath "LUAJIT_CPATH";
    keepalive_requests 10000;
    keepalive_timeout 60s;
    client_max_body_size 8m;
    client_body_buffer_size 1m; # /reply answers bodies up to this from memory
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

        # /target/...: the request target and the headers that come from the
        # URL, as they arrived (request_uri is the raw target, unnormalised).
        location ^~ /target/ {
            content_by_lua_block {
                local cjson = require "cjson"
                local h = ngx.req.get_headers()
                ngx.print(cjson.encode({
                    target = ngx.var.request_uri,
                    host = h["host"] or "",
                    authorization = h["authorization"] or "",
                }))
            }
        }

        # The request body, answered as it came: a response of the spec's choosing.
        location = /reply {
            content_by_lua_block {
                ngx.req.read_body()
                ngx.print(ngx.req.get_body_data() or "")
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
                -- (cjson writes an empty table as {}: the arrays are spliced in.)
                local doc = cjson.encode({
                    user = { id = ngx.req.raw_header() },
                    total_users = 0, page = 1, limit = 1, created_before = 0,
                    body = ngx.req.get_body_data() or "",
                })
                ngx.print(doc:sub(1, -2) .. ',"users":[],"devices":[]}')
            }
        }

        # /objects/...: objects where the API has arrays: a page whose users,
        # and a device list whose devices, are keyed by id.
        location ^~ /objects/ {
            content_by_lua_block {
                ngx.print('{"users":{"a":{"id":"a"},"b":{"id":"b"}},"total_users":2,'
                    .. '"page":1,"limit":20,"created_before":0,"devices":{"d":{"id":"d"}}}')
            }
        }

        # /hangup/...: GET answers a user (so the connection stays open for the
        # next request); any other method is counted, then the connection is
        # closed without an answer. /counter?name=hangup reads and resets the count.
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
        # Counts the requests that arrive, then answers after ms milliseconds;
        # /counter?name=arrived reads and resets the count.
        location = /count {
            content_by_lua_block {
                ngx.shared.counts:incr("arrived", 1, 0)
                ngx.sleep((tonumber(ngx.var.arg_ms) or 0) / 1000)
                ngx.print('{"counted":true}')
            }
        }
        # /pages/<total>/<present>/<short_first>/v1/apps/<app>/users: list
        # pages the emulator never gives. total_users says <total>, but only
        # <present> users exist (ids u0001...); with <short_first> > 0, page 1
        # holds only that many. Each page number asked for is appended to
        # /counter?name=pages (as one text).
        location ^~ /pages/ {
            content_by_lua_block {
                local total, present, short = ngx.var.uri:match("^/pages/(%d+)/(%d+)/(%d+)/")
                total, present, short = tonumber(total), tonumber(present), tonumber(short)
                local page = tonumber(ngx.var.arg_page) or 1
                local limit = tonumber(ngx.var.arg_limit) or 10
                local log = ngx.shared.counts:get("pages_log") or ""
                ngx.shared.counts:set("pages_log", log .. page .. ",")
                local first, last = (page - 1) * limit + 1, math.min(present, page * limit)
                if page == 1 and short > 0 then
                    last = short
                end
                local users = {}
                for i = first, last do
                    users[#users + 1] = string.format('{"id":"u%04d"}', i)
                end
                ngx.print(string.format('{"users":[%s],"total_users":%d,"page":%d,"limit":%d,'
                    .. '"created_before":1700000000}', table.concat(users, ","), total, page, limit))
            }
        }
        location = /pages-log {
            content_by_lua_block {
                ngx.print(ngx.shared.counts:get("pages_log") or "")
                ngx.shared.counts:delete("pages_log")
            }
        }
        # /bigapi/<n>/<framing>/...: a user (get_user's answer, whatever the
        # rest of the path) whose metadata makes the body n bytes, with a
        # Content-Length ("length") or chunked in 64 KiB pieces ("chunked").
        location ^~ /bigapi/ {
            gzip off;
            content_by_lua_block {
                local n, framing = ngx.var.uri:match("^/bigapi/(%d+)/(%a+)/")
                n = tonumber(n) or 1000
                local head, tail = '{"user":{"id":"u1","user_metadata":{"pad":"', '"}}}'
                local pad = n - #head - #tail
                if framing == "chunked" then
                    ngx.print(head)
                    local piece = string.rep("p", 65536)
                    while pad > 0 do
                        ngx.print(pad >= #piece and piece or piece:sub(1, pad))
                        pad = pad - #piece
                    end
                    ngx.print(tail)
                else
                    ngx.header["Content-Length"] = n
                    ngx.print(head .. string.rep("p", pad) .. tail)
                end
            }
        }
        # /nothttp/<what>/...: counts the request, then answers bytes that are
        # not an HTTP response ("zero": an HTTP/1.1 000 status line; "text": a
        # line of text); /counter?name=nothttp reads and resets the count.
        location ^~ /nothttp/ {
            content_by_lua_block {
                ngx.req.read_body()
                ngx.shared.counts:incr("nothttp", 1, 0)
                local what = ngx.var.uri:match("^/nothttp/(%w+)/")
                local sock = assert(ngx.req.socket(true))
                sock:send(what == "zero" and "HTTP/1.1 000\r\n\r\n" or "hello world\r\n\r\n")
            }
        }
        # /bighead/...: a user, after a response header of 200,000 bytes.
        location ^~ /bighead/ {
            content_by_lua_block {
                ngx.header["X-Big"] = string.rep("h", 200000)
                ngx.print('{"user":{"id":"u1"}}')
            }
        }
        # /echokey/<json|text>/...: a 401 that echoes the request's headers
        # (Authorization included) in its error: as Passage's JSON error body,
        # or as a plain-text page.
        location ^~ /echokey/ {
            content_by_lua_block {
                local cjson = require "cjson"
                local raw = ngx.req.raw_header()
                ngx.status = 401
                if ngx.var.uri:find("^/echokey/json/") then
                    ngx.print(cjson.encode({ code = "invalid_access_token", error = raw }))
                else
                    ngx.header["Content-Type"] = "text/plain"
                    ngx.print("denied: " .. raw)
                end
            }
        }
        # Reads and resets the counter `name`.
        location = /counter {
            content_by_lua_block {
                local name = ngx.var.arg_name or ""
                ngx.print(tostring(ngx.shared.counts:get(name) or 0))
                ngx.shared.counts:set(name, 0)
            }
        }
    }
]]

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

local server -- the running private nginx

-- Starts the server (once); returns its base URL.
function M.start()
    if server then return M.url() end
    local port = M.port()
    local prefix = assert(launcher.temp_prefix("nginx"))
    local cert, key = prefix .. "/cert.pem", prefix .. "/key.pem"
    local tls = os.execute(string.format("env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048"
        .. " -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1"
        .. " -keyout '%s' -out '%s' >'%s/openssl.log' 2>&1", key, cert, prefix))
    tls = tls == true or tls == 0
    local tls_listen = tls and string.format("listen 127.0.0.1:%d ssl; ssl_certificate %s; "
        .. "ssl_certificate_key %s;", port + 1, cert, key) or ""
    local http = HTTP:gsub("TLS_LISTEN", function() return tls_listen end)
        :gsub("PORT", tostring(port)):gsub("LUAJIT_CPATH", launcher.luajit_cpath())
    server = assert(launcher.start { prefix = prefix, port = port, http = http, temporary = true,
        worker_connections = 512 })
    M.cert_file = tls and cert or nil
    return M.url()
end

function M.stop()
    if not server then return end
    server:stop()
    server = nil
    M.cert_file = nil
end

return M
