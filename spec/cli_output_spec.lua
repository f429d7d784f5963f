-- passage-users export -o onto what an administrator may name: a regular
-- file (replaced whole, through <file>.part), a symbolic link (written
-- through to its target), a FIFO (written directly, left a FIFO), and an
-- export stopped by SIGINT (the .part stays, the target is untouched).
-- Everything is made inside the spec's own temporary folder.
local emulator = require "support.emulator"
local cli = require "support.cli"
local files = require "support.files"

local APP, KEY = "cli_out", "sk_cli_out_Vb61Lm"
local USERS = 1200

local function env()
    return { PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = APP, PASSAGE_BASE_URL = emulator.url() }
end

local function file_type(path)
    local err = os.tmpname() -- stat's complaint about a missing path, not wanted
    local p = assert(io.popen("stat -c %F " .. cli.quote(path) .. " 2>" .. cli.quote(err)))
    local t = p:read("*l")
    p:close()
    os.remove(err)
    return t
end

local function exists(path)
    return file_type(path) ~= nil
end

describe("passage-users export -o", function()
    local dir

    setup(function()
        emulator.reset()
        emulator.add_app(APP, KEY)
        emulator.seed(APP, USERS, 3)
        dir = cli.temp_dir()
    end)

    teardown(function()
        emulator.faults { clear = true }
        cli.remove_dir(dir)
    end)

    it("replaces a regular file whole, through <file>.part", function()
        local path = dir .. "/users.jsonl"
        local f = assert(io.open(path, "wb"))
        f:write("old content\n")
        f:close()
        local out, err, code = cli.run({ "export", "-o", path }, { env = env() })
        assert.equal(0, code, err)
        assert.equal("", out)
        assert.equal(USERS, #cli.lines(assert(files.read(path))))
        assert.is_false(exists(path .. ".part"))
    end)

    it("writes through a symbolic link to its target, and the link stays", function()
        local target, link = dir .. "/target.jsonl", dir .. "/link.jsonl"
        local f = assert(io.open(target, "wb"))
        f:write("old\n")
        f:close()
        assert(os.execute("ln -s target.jsonl " .. link))
        local _, err, code = cli.run({ "export", "-o", link }, { env = env() })
        assert.equal(0, code, err)
        assert.equal("symbolic link", file_type(link))
        assert.equal(USERS, #cli.lines(assert(files.read(target))))
        -- A link to nothing yet: the file is made where it points.
        local dangling = dir .. "/dangling.jsonl"
        assert(os.execute("ln -s made.jsonl " .. dangling))
        _, err, code = cli.run({ "export", "--format", "csv", "-o", dangling }, { env = env() })
        assert.equal(0, code, err)
        assert.equal("symbolic link", file_type(dangling))
        assert.equal(USERS + 1, #cli.lines(assert(files.read(dir .. "/made.jsonl"))))
    end)

    it("writes a FIFO directly and leaves it a FIFO", function()
        local fifo, got = dir .. "/fifo", dir .. "/from-fifo"
        assert(os.execute("mkfifo " .. fifo))
        -- The reader, in the background, copies what comes to a file.
        os.execute("cat " .. fifo .. " > " .. got .. " &")
        local _, err, code = cli.run({ "export", "-o", fifo }, { env = env() })
        assert.equal(0, code, err)
        os.execute("sleep 0.2")
        assert.equal("fifo", file_type(fifo))
        assert.is_false(exists(fifo .. ".part"))
        assert.equal(USERS, #cli.lines(assert(files.read(got))))
    end)

    it("stopped by SIGINT, keeps the .part and leaves the target alone", function()
        local path = dir .. "/stopped.jsonl"
        local f = assert(io.open(path, "wb"))
        f:write("the previous export\n")
        f:close()
        -- Three pages, each 1 s late: the signal comes during the second.
        emulator.faults { latency_ms = 1000 }
        local job_dir = dir .. "/job"
        os.execute("mkdir " .. job_dir)
        local job = cli.start(cli.command({ "export", "--in-flight", "1", "-o", path }, env()),
            job_dir)
        os.execute("sleep 1.5")
        cli.signal(job, "INT")
        local _, err, code = cli.wait(job, 30)
        emulator.faults { latency_ms = 0 }
        assert.equal(130, code, err)
        assert.matches("export stopped by SIGINT after %d+ users", err)
        assert.matches("written so far are in " .. path:gsub("%p", "%%%0") .. "%.part", err)
        assert.equal("the previous export\n", files.read(path))
        local partial = #cli.lines(assert(files.read(path .. ".part")))
        assert.is_true(partial > 0 and partial < USERS, "partial: " .. partial)
    end)
end)
