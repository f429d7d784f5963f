-- passage-users as an administrator installs and uses it: the installed
-- command from a private LuaRocks tree with no environment, --version,
-- shell completion, --quiet, and no summary lost to a second stream.
local shell = require "support.shell"
local emulator = require "support.emulator"
local cli = require "support.cli"

local APP, KEY = "cli_habits", "sk_cli_hab_R5yu1K"

local function env(extra)
    local e = { PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = APP, PASSAGE_BASE_URL = emulator.url() }
    for k, v in pairs(extra or {}) do
        e[k] = v
    end
    return e
end

local function sh(cmd)
    return shell.capture(cmd .. " 2>&1")
end

describe("passage-users habits", function()
    local dir

    setup(function()
        emulator.reset()
        emulator.add_app(APP, KEY)
        emulator.seed(APP, 30, 2)
        dir = cli.temp_dir()
    end)

    teardown(function()
        cli.remove_dir(dir)
    end)

    it("runs installed in a private LuaRocks tree, from anywhere, with no environment", function()
        local tree = dir .. "/tree"
        local log, code = sh("luarocks make --tree " .. tree
            .. " --deps-mode=none rockspec/passage-lua-0.1.0-1.rockspec")
        assert.equal(0, code, log)
        local bin = tree .. "/bin/passage-users"
        local out
        out, code = sh("cd / && env -i PATH=/usr/bin:/bin " .. bin .. " --version")
        assert.equal(0, code, out)
        assert.matches("^passage%-users 0%.1%.0 %(Lua 5%.%d%)\n$", out)
        out, code = sh(string.format("cd / && env -i PATH=/usr/bin:/bin PASSAGE_API_KEY=%s "
            .. "PASSAGE_APP_ID=%s PASSAGE_BASE_URL=%s %s list --limit 3", KEY, APP, emulator.url(),
            bin))
        assert.equal(0, code, out)
        assert.equal(3, #cli.lines(out))
    end)

    it("degrades cleanly without lua-luv: pipes read, SIGINT a clean exit 130", function()
        local hide_luv = 'package.preload.luv = function() error("absent") end'
        local no_luv = { LUA_INIT_5_4 = hide_luv, LUA_INIT = hide_luv } -- Lua 5.4's, LuaJIT's
        local out, err, code = cli.run({ "import", "-" }, { env = env(no_luv),
            stdin = '{"email":"noluv1@example.com"}\n{"email":"noluv2@example.com"}\n' })
        assert.equal(0, code, err)
        assert.equal(2, #cli.lines(out))
        local input = dir .. "/noluv.jsonl"
        local f = assert(io.open(input, "wb"))
        for n = 1, 50000 do
            f:write('{"email":"noluv-big', n, '@example.com"}\n')
        end
        f:close()
        local job_dir = dir .. "/noluv_job"
        os.execute("mkdir " .. job_dir)
        local job = cli.start(cli.command({ "import", input, "--no-progress" }, env(no_luv)),
            job_dir)
        os.execute("sleep 1")
        cli.signal(job, "INT")
        out, err, code = cli.wait(job, 30)
        assert.equal(130, code, err)
        assert.equal("passage-users: stopped by SIGINT\n", err)
        for _, line in ipairs(cli.lines(out)) do
            assert.is_true(require("cjson").decode(line).ok)
        end
    end)

    it("prints its version", function()
        local out, err, code = cli.run({ "--version" })
        assert.equal(0, code, err)
        assert.matches("^passage%-users %d+%.%d+%.%d+ %(Lua 5%.%d%)\n$", out)
    end)

    it("writes completion scripts for bash, zsh and fish", function()
        local out, err, code = cli.run({ "completion", "bash" })
        assert.equal(0, code, err)
        assert.matches("import", out)
        assert.matches("%-%-on%-exists", out)
        local path = dir .. "/completion.bash"
        local f = assert(io.open(path, "wb"))
        f:write(out)
        f:close()
        local check
        check, code = sh("bash -n " .. path)
        assert.equal(0, code, check)
        out, err, code = cli.run({ "completion", "zsh" })
        assert.equal(0, code, err)
        assert.matches("#compdef passage%-users", out)
        out, err, code = cli.run({ "completion", "fish" })
        assert.equal(0, code, err)
        assert.matches("complete %-c passage%-users", out)
        local _, tcsh_err, tcsh_code = cli.run({ "completion", "tcsh" })
        assert.equal(2, tcsh_code)
        assert.matches("^passage%-users: ", tcsh_err)
    end)

    it("-v says one line per HTTP attempt, retries included, never the key", function()
        local input = '{"email":"verbose1@example.com"}\n{"email":"verbose2@example.com"}\n'
        emulator.faults { next = { { status = 503, count = 2 } } }
        local out, err, code = cli.run({ "-v", "import", "-", "--in-flight", "1" },
            { env = env(), stdin = input })
        emulator.faults { clear = true }
        assert.equal(1, code, err) -- a create is not retried after a 503
        assert.equal(2, #cli.lines(out))
        local posts = {}
        for line in err:gmatch("[^\n]+") do
            if line:find("POST /v1/apps/" .. APP .. "/users: ", 1, true) then
                posts[#posts + 1] = line
            end
        end
        assert.equal(2, #posts, err)
        assert.matches(": HTTP 503 http, %d+ ms$", posts[1])
        assert.matches(": HTTP 503 http, %d+ ms$", posts[2])
        assert.is_nil(err:find(KEY, 1, true))
        -- A get is retried: each attempt has its line, the first ones say so.
        local created = cli.lines(cli.run({ "import", "-" }, { env = env(),
            stdin = '{"email":"verbose3@example.com"}\n' }))
        local id = assert(require("cjson").decode(created[1]).id)
        emulator.faults { next = { { status = 503, count = 2 } } }
        local _, get_err, get_code = cli.run({ "-v", "get", id }, { env = env() })
        emulator.faults { clear = true }
        assert.equal(0, get_code, get_err)
        local gets = {}
        for line in get_err:gmatch("[^\n]+") do
            if line:find("GET /v1/apps/" .. APP .. "/users/", 1, true) then
                gets[#gets + 1] = line
            end
        end
        assert.equal(3, #gets, get_err)
        assert.matches(": HTTP 503 http, %d+ ms, retrying$", gets[1])
        assert.matches(": HTTP 503 http, %d+ ms, retrying$", gets[2])
        assert.matches(": HTTP 200, %d+ ms$", gets[3])
        assert.is_nil(get_err:find(KEY, 1, true))
    end)

    it("--quiet keeps results and errors, drops summaries", function()
        local input = '{"email":"quiet1@example.com"}\n{"email":"bad"}\n'
        local out, err, code = cli.run({ "--quiet", "import", "-" }, { env = env(), stdin = input })
        assert.equal(1, code)
        assert.equal(2, #cli.lines(out))
        assert.equal("", err)
        out, err, code = cli.run({ "import", "-" }, { env = env(),
            stdin = '{"email":"quiet2@example.com"}\n' })
        assert.equal(0, code, err)
        assert.equal(1, #cli.lines(out))
        assert.matches("1 records, 1 ok, 0 failed", err)
        -- Errors still show.
        local _, get_err, get_code = cli.run({ "--quiet", "get", "no_such_user" }, { env = env() })
        assert.equal(1, get_code)
        assert.matches("^passage%-users: .*user_not_found", get_err)
    end)
end)
