-- The passage-emulator rock: `luarocks make` of emulator/'s rockspec into a
-- fresh tree, then its command, run from outside the checkout with no
-- LUA_PATH, starts an emulator that answers HTTP, leaves one it did not
-- start running, and stops. The port is one the kernel hands out (free by
-- construction), so the emulator of the spec run itself is never touched.
local socket = require "socket"
local http = require "socket.http"
local run = require "support.shell"

local function free_port()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

local function answers(port)
    local _, status = http.request {
        url = "http://127.0.0.1:" .. port .. "/v1/apps/test_app/users?limit=1",
        headers = { authorization = "Bearer test_key" },
    }
    return status == 200
end

describe("the passage-emulator rock", function()
    local tree, command, port, runtime, prefix, stats

    -- `<command> args`, from /, with no Lua paths; its output and exit status.
    local function emulator(args)
        local _, out = run(string.format("{ cd / && env -u LUA_PATH -u LUA_CPATH %s %s; echo \"exit=$?\"; }",
            command, args))
        return out, tonumber(out:match("exit=(%d+)%s*$"))
    end

    setup(function()
        tree = os.tmpname()
        os.remove(tree)
        port = free_port()
        command = tree .. "/bin/passage-emulator"
        runtime = require("passage.emulator.control").runtime_dir(port) -- the default
        prefix = os.tmpname() -- one given with --prefix
        os.remove(prefix)
        stats = os.tmpname() -- where curl puts an answer nobody reads
    end)

    teardown(function()
        if answers(port) then
            emulator("stop --port " .. port)
            emulator("stop --port " .. port .. " --prefix " .. prefix)
        end
        run("rm -rf '" .. tree .. "' '" .. runtime .. "' '" .. prefix .. "' '" .. stats .. "'")
    end)

    it("installs only the emulator, with its command", function()
        local ok, out = run(string.format("cd emulator && luarocks --lua-version 5.4 --tree %s make "
            .. "--deps-mode=none passage-emulator-0.1.0-1.rockspec", tree))
        assert(ok, out)
        local modules = tree .. "/share/lua/5.4/passage/"
        local _, sources = run("cd emulator/lua/passage/emulator && LC_ALL=C ls *.lua")
        local _, installed = run("cd " .. modules .. "emulator && LC_ALL=C ls *.lua")
        assert.are.equal(sources, installed)
        assert.matches("routes.lua", installed)
        -- each of them named in the rockspec (luarocks would copy a forgotten one anyway)
        local rockspec = {}
        local chunk = assert(loadfile("emulator/passage-emulator-0.1.0-1.rockspec", "t", rockspec))
        if setfenv then
            setfenv(chunk, rockspec)
        end
        chunk()
        local named = {}
        for name in pairs(rockspec.build.modules) do
            named[#named + 1] = name:match("^passage%.emulator%.(.*)$") .. ".lua"
        end
        table.sort(named)
        assert.are.equal(sources, table.concat(named, "\n") .. "\n")
        local _, library = run("find " .. modules .. " -maxdepth 1 -type f")
        assert.are.equal("", library) -- nothing of passage-lua itself
    end)

    it("starts an emulator that answers HTTP, its files outside the tree", function()
        local out, code = emulator("start --port " .. port)
        assert.are.equal(0, code, out)
        assert.matches("emulator running at http://127.0.0.1:" .. port .. "/v1", out, 1, true)
        assert.is_true(answers(port))
        local _, found = run("find '" .. tree .. "' -name nginx.conf -o -name nginx.pid -o -name '*.log'")
        assert.are.equal("", found)
        local conf = assert(io.open(runtime .. "/conf/nginx.conf")):read("*a")
        assert.is_truthy(conf:find("lua_package_path '" .. tree .. "/share/lua/5.4/?.lua;", 1, true))
        out, code = emulator("status --port " .. port)
        assert.are.equal(0, code, out)
    end)

    it("leaves running an emulator it did not start", function()
        local out, code = emulator("run --port " .. port .. " -- sh -c 'exit 0'")
        assert.are.equal(0, code, out)
        assert.is_true(answers(port))
        out, code = emulator("start --port " .. port)
        assert.are.equal(0, code, out)
        assert.matches("already running", out)
    end)

    it("stops, and runs a command around an emulator it starts and stops", function()
        local out, code = emulator("stop --port " .. port)
        assert.are.equal(0, code, out)
        assert.matches("emulator stopped", out)
        assert.is_false(answers(port))
        out, code = emulator("status --port " .. port)
        assert.are.equal(1, code, out)
        out, code = emulator(string.format("run --port %d --prefix %s -- sh -c "
            .. "'curl -fsS -o %s http://127.0.0.1:%d/__emulator/stats && exit 3'",
            port, prefix, stats, port))
        assert.are.equal(3, code, out) -- the command's own status, after it reached the emulator
        assert.is_false(answers(port))
        assert.is_truthy(io.open(prefix .. "/conf/nginx.conf"), "nginx's files under --prefix")
        out, code = emulator("bogus")
        assert.are.equal(2, code)
        assert.matches("usage: passage%-emulator", out)
    end)
end)
