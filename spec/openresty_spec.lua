-- passage.openresty inside a private nginx with the Lua module: calls run
-- in the thread pool, and the single worker keeps answering other requests
-- while slow API calls are in flight.
local users = require "passage.users"
local emulator = require "support.emulator"
local socket = require "socket"
local cjson = require "cjson"
local launcher = require "passage.emulator.launcher"

local APP = "test_app"
local PORT = tonumber(os.getenv("PASSAGE_OPENRESTY_PORT")) or 18795
local LATENCY_MS = 300

-- The body of the http block; REPO, BASE_URL, PORT, LUAJIT_CPATH and "APP" are filled in.
local HTTP = [[
    lua_package_path "REPO/lua/?.lua;REPO/lua/?/init.lua;;";
    lua_package_cpath "REPO/build/jit/?.so;LUAJIT_CPATH";
    default_type application/json;

    init_by_lua_block {
        OPTS = { api_key = "test_key", base_url = "BASE_URL", timeout_ms = 5000 }
    }

    server {
        listen 127.0.0.1:PORT;

        location = /ping {
            content_by_lua_block { ngx.print('{"pong":true}') }
        }

        # The documented way: the call runs in the thread pool.
        location = /user {
            content_by_lua_block {
                local cjson = require "cjson"
                local openresty = require "passage.openresty"
                local user, err = openresty.run("passage", OPTS, "get_user", "APP",
                    ngx.var.arg_id)
                if not user then
                    ngx.status = err.status or 502
                    ngx.print(cjson.encode({ kind = err.kind, code = err.code,
                        operation = err.operation, text = tostring(err) }))
                    return
                end
                ngx.print(cjson.encode(user))
            }
        }

        location = /bulk {
            content_by_lua_block {
                local cjson = require "cjson"
                local openresty = require "passage.openresty"
                local calls = {}
                for id in ngx.var.arg_ids:gmatch("[^,]+") do
                    calls[#calls + 1] = { "get_user", "APP", id }
                end
                local results = openresty.run("passage", OPTS, "bulk", calls,
                    { max_in_flight = 8 })
                local out = {}
                for i, r in ipairs(results) do
                    out[i] = r.value and r.value.id or tostring(r.err)
                end
                ngx.print(cjson.encode(out))
            }
        }

        location = /bad {
            content_by_lua_block {
                local openresty = require "passage.openresty"
                local ok, err = pcall(openresty.run, "passage", OPTS, "get_user", "APP", "")
                ngx.status = ok and 200 or 500
                ngx.print(tostring(err))
            }
        }

        # The wrong way, for contrast: a blocking call in the worker itself.
        location = /direct {
            content_by_lua_block {
                local users = require "passage.users"
                DIRECT = DIRECT or users.new(OPTS)
                local user = DIRECT:get_user("APP", ngx.var.arg_id)
                ngx.print(user and user.id or "failed")
            }
        }
    }
]]

local function sh(cmd)
    local ok = os.execute(cmd)
    return ok == true or ok == 0
end

local function read_file(path)
    local f = io.open(path, "r")
    if not f then
        return nil
    end
    local s = f:read("*a")
    f:close()
    return s
end

local function url(path)
    return "http://127.0.0.1:" .. PORT .. path
end

-- GET with luasocket; returns status, body, seconds taken.
local function get(path)
    local http = require "socket.http"
    local t = socket.gettime()
    local body, status = http.request(url(path))
    return status, body, socket.gettime() - t
end

-- Starts curl in the background; its output lands in `file`.
local function get_in_background(path, file)
    assert(sh(string.format("(curl -s -o '%s.body' -w '%%{http_code} %%{time_total}' '%s' > '%s' "
        .. "2>/dev/null &)", file, url(path), file)))
end

local function wait_for_file(file, seconds)
    local deadline = socket.gettime() + seconds
    while socket.gettime() < deadline do
        local s = read_file(file)
        if s and s:match("^%d+ [%d.]+$") then
            return s
        end
        socket.sleep(0.02)
    end
    return nil
end

describe("passage.openresty in nginx's thread pool", function()
    local server

    local function log_tail()
        return server and server:log_tail() or ""
    end

    setup(function()
        local repo = io.popen("pwd"):read("*l")
        -- Always through make: a core left over from older sources would
        -- not match the Lua modules.
        assert(sh("make build LUA_VERSION=jit >/dev/null"), "could not build the LuaJIT core")
        local http = HTTP:gsub("REPO", repo):gsub("BASE_URL", emulator.url())
            :gsub("PORT", tostring(PORT)):gsub("\"APP\"", '"' .. APP .. '"')
            :gsub("LUAJIT_CPATH", launcher.luajit_cpath())
        server = assert(launcher.start { prefix = assert(launcher.temp_prefix("openresty")), port = PORT,
            main = "thread_pool passage threads=4;", http = http, temporary = true,
            worker_connections = 512 })
    end)

    teardown(function()
        if server then
            server:stop()
        end
    end)

    local user
    before_each(function()
        emulator.reset()
        local client = users.new { api_key = "test_key", base_url = emulator.url() }
        user = assert(client:create_user(APP, { email = "nginx@example.com" }))
        client:close()
    end)

    after_each(function()
        emulator.faults { latency_ms = 0 }
    end)

    it("returns values and errors as the blocking call does", function()
        local status, body = get("/user?id=" .. user.id)
        assert.equal(200, status, body .. log_tail())
        local got = cjson.decode(body)
        assert.equal(user.id, got.id)
        assert.equal("nginx@example.com", got.email)

        status, body = get("/user?id=missing")
        assert.equal(404, status)
        local err = cjson.decode(body)
        assert.equal("http", err.kind)
        assert.equal("user_not_found", err.code)
        assert.equal("get_user", err.operation)
        assert.matches("passage get_user: HTTP 404 user_not_found", err.text)

        status, body = get("/bad")
        assert.equal(500, status)
        assert.matches("user_id: must not be empty", body)

        status, body = get("/bulk?ids=" .. user.id .. ",missing," .. user.id)
        assert.equal(200, status, body)
        local results = cjson.decode(body)
        assert.equal(user.id, results[1])
        assert.matches("HTTP 404 user_not_found", results[2])
        assert.equal(user.id, results[3])
    end)

    it("keeps the worker answering while slow calls are in flight", function()
        emulator.faults { latency_ms = LATENCY_MS }
        local files = {}
        local t0 = socket.gettime()
        for i = 1, 4 do
            files[i] = server.prefix .. "/tmp/slow" .. i
            get_in_background("/user?id=" .. user.id, files[i])
        end
        socket.sleep(0.08) -- the four calls are in the pool now
        local pings = {}
        for i = 1, 5 do
            local status, _, took = get("/ping")
            assert.equal(200, status)
            pings[i] = took
        end
        local slowest_ping = math.max(pings[1], pings[2], pings[3], pings[4], pings[5])
        -- Answered in well under the API latency while four calls wait on it.
        assert.is_true(slowest_ping < LATENCY_MS / 1000 / 3,
            string.format("a ping took %.0f ms during slow calls", slowest_ping * 1000))
        for i = 1, 4 do
            local result = wait_for_file(files[i], 5)
            assert.is_not_nil(result, "slow call " .. i .. " did not finish")
            assert.matches("^200 ", result)
            assert.equal(user.id, cjson.decode(read_file(files[i] .. ".body")).id)
        end
        -- Four threads: the four calls overlapped (about one latency, not four).
        assert.is_true(socket.gettime() - t0 < 4 * LATENCY_MS / 1000 * 0.75)
    end)
end)
