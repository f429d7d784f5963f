-- passage-users reading what an administrator feeds it: stdin, pipes,
-- /dev/stdin, process substitution and FIFOs, with and without a terminal
-- (`script` gives the command a pseudo-terminal), lines over the cap, and
-- an endless input. Every file a run writes is in the spec's own folder.
local shell = require "support.shell"
local emulator = require "support.emulator"
local cli = require "support.cli"
local cjson = require("cjson").new()

local KEY = "sk_cli_in_P0w2Rt"

local function env(app)
    return { PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = app, PASSAGE_BASE_URL = emulator.url() }
end

-- Runs a bash command line under a pseudo-terminal; returns what the
-- terminal showed (stdout and stderr) and the exit status.
local function in_terminal(dir, bash_line)
    local wrapped = "script -qec " .. cli.quote("bash -c " .. cli.quote(bash_line)) .. " "
        .. dir .. "/typescript"
    return shell.capture(wrapped .. " </dev/null 2>&1")
end

local function ok_lines(text)
    local n = 0
    for line in text:gmatch("[^\r\n]+") do
        local start = line:find('{"line"', 1, true)
        if start then
            local r = cjson.decode(line:sub(start))
            assert.is_true(r.ok, line)
            n = n + 1
        end
    end
    return n
end

describe("passage-users import reads", function()
    local dir

    setup(function()
        emulator.reset()
        dir = cli.temp_dir()
    end)

    teardown(function()
        cli.remove_dir(dir)
    end)

    -- A new app and an input file of `n` users for it.
    local function app_with_input(app, n)
        emulator.add_app(app, KEY)
        local path = dir .. "/" .. app .. ".jsonl"
        local f = assert(io.open(path, "wb"))
        for i = 1, n do
            f:write(cjson.encode { email = app .. i .. "@example.com" }, "\n")
        end
        f:close()
        return path
    end

    local function command(app, file)
        return cli.command({ "import", file }, env(app))
    end

    for _, case in ipairs {
        { "a pipe to -", function(app, path) return "cat " .. path .. " | " .. command(app, "-") end },
        { "/dev/stdin", function(app, path) return command(app, "/dev/stdin") .. " <" .. path end },
        { "/dev/stdin from a pipe", function(app, path)
            return "cat " .. path .. " | " .. command(app, "/dev/stdin") end },
        { "process substitution", function(app, path)
            return command(app, "<(cat " .. path .. ")"):gsub("'(<%(cat [^)]*%))'", "%1") end },
    } do
        for _, terminal in ipairs { true, false } do
            it(case[1] .. (terminal and " on a terminal" or " without a terminal"), function()
                local app = ("in_" .. case[1] .. (terminal and "_tty" or "")):gsub("[^%w]", "_")
                local path = app_with_input(app, 40)
                local line = case[2](app, path)
                local text, code
                if terminal then
                    text, code = in_terminal(dir, line)
                else
                    text, code = shell.capture("bash -c " .. cli.quote(line) .. " </dev/null 2>&1")
                end
                assert.equal(0, code, text)
                assert.equal(40, ok_lines(text))
                assert.matches("40 records, 40 ok, 0 failed", text)
            end)
        end
    end

    it("a FIFO on a terminal (with the bar) is read whole", function()
        local app = "in_fifo_tty"
        local path = app_with_input(app, 30)
        local fifo = dir .. "/fifo_tty"
        assert(os.execute("mkfifo " .. fifo))
        local text, code = in_terminal(dir, "(sleep 0.3; cat " .. path .. " > " .. fifo .. ") & "
            .. command(app, fifo))
        assert.equal(0, code, text)
        assert.equal(30, ok_lines(text))
        assert.matches("30 records, 30 ok, 0 failed", text)
    end)

    it("pipes that end at once, whatever their last line, end the run", function()
        emulator.add_app("in_ends", KEY)
        for _, case in ipairs {
            { "a,b\n\"x\n", "csv", 1, "a quoted field is not closed" },
            { '{"email":"no-newline@example.com"}', "jsonl", 0, '"ok":true' },
            { "", "jsonl", 0, "0 records" },
            { "\n \n", "jsonl", 0, "0 records" },
            { "email\r\nends-crlf@example.com\r\n", "csv", 0, '"ok":true' },
        } do
            local line = "printf %s " .. cli.quote(case[1]) .. " | timeout 10 "
                .. cli.command({ "import", "-", "--input-format", case[2] }, env("in_ends"))
            local text, code = shell.capture("bash -c " .. cli.quote(line) .. " 2>&1")
            assert.equal(case[3], code, case[1] .. ": " .. text)
            assert.matches(case[4], text, 1, true)
        end
    end)

    it("a FIFO whose writer comes late, and stops on SIGINT while waiting for one", function()
        local app = "in_fifo"
        local path = app_with_input(app, 25)
        local fifo = dir .. "/fifo"
        assert(os.execute("mkfifo " .. fifo))
        local job_dir = dir .. "/fifo_job"
        os.execute("mkdir " .. job_dir)
        local job = cli.start(command(app, fifo), job_dir)
        os.execute("sleep 0.5; cat " .. path .. " > " .. fifo)
        local out, err, code = cli.wait(job, 30)
        assert.equal(0, code, err)
        assert.equal(25, ok_lines(out))
        -- Nobody writes: a SIGINT ends the wait.
        job_dir = dir .. "/fifo_job2"
        os.execute("mkdir " .. job_dir)
        job = cli.start(command(app, fifo), job_dir)
        os.execute("sleep 0.5")
        cli.signal(job, "INT")
        out, err, code = cli.wait(job, 10)
        assert.equal(130, code, err)
        assert.equal("", out)
        assert.matches("^passage%-users: import stopped by SIGINT: 0 records done", err)
    end)

    it("a line over 1 MiB as an input error for that line, in bounded memory", function()
        local app = "in_long"
        emulator.add_app(app, KEY)
        local path = dir .. "/long.jsonl"
        local f = assert(io.open(path, "wb"))
        f:write('{"email":"before@example.com"}\n')
        f:write('{"email":"x@example.com","user_metadata":{"blob":"', ("b"):rep(50 * 1024 * 1024),
            '"}}\n')
        f:write('{"email":"after@example.com"}\n')
        f:close()
        local p = assert(io.popen("/usr/bin/time -f 'maxrss=%M' " .. command(app, path) .. " 2>&1"))
        local text = p:read("*a")
        p:close()
        local lines = {}
        for line in text:gmatch("[^\n]+") do
            if line:sub(1, 1) == "{" then
                lines[#lines + 1] = cjson.decode(line)
            end
        end
        assert.equal(3, #lines, text)
        assert.is_true(lines[1].ok)
        assert.is_false(lines[2].ok)
        assert.equal("input", lines[2].kind)
        assert.matches("line longer than 1048576 bytes", lines[2].message)
        assert.is_true(lines[3].ok)
        local kb = tonumber(text:match("maxrss=(%d+)"))
        assert.is_true(kb < 64 * 1024, "max RSS " .. kb .. " KB for a 50 MiB line")
    end)

    it("a CSV quote never closed holds at most 1 MiB, and reading goes on", function()
        emulator.add_app("in_quote", KEY)
        local path = dir .. "/unclosed.csv"
        local f = assert(io.open(path, "wb"))
        f:write('email,user_metadata\n"never closed\n')
        for _ = 1, 12000 do
            f:write(("q"):rep(100), "\n")
        end
        f:write("after@example.com,\n")
        f:close()
        local out, _, code = cli.run({ "import", path, "--dry-run" }, { env = env("in_quote") })
        assert.equal(1, code)
        local lines = cli.lines(out)
        local first, last = cjson.decode(lines[1]), cjson.decode(lines[#lines])
        assert.equal(2, first.line)
        assert.matches("a quoted field longer than 1048576 bytes", first.message)
        assert.is_true(last.ok)
        assert.equal("after@example.com", last.request.email)
    end)

    it("/dev/zero: ends at once with a clear error", function()
        emulator.add_app("in_zero", KEY)
        local out, err, code = cli.run({ "import", "/dev/zero" }, { env = env("in_zero") })
        assert.equal(1, code)
        assert.equal("", out)
        assert.matches("passage%-users: input stopped at line 1: a NUL byte in the input", err)
    end)

    it("bytes that are not UTF-8 as an input error, and every result line stays JSON", function()
        emulator.add_app("in_bytes", KEY)
        local out, _, code = cli.run({ "import", "-", "--dry-run" }, { env = env("in_bytes"),
            stdin = '{"email":"a\255b@example.com"}\n{"email":"ok@example.com"}\n' })
        assert.equal(1, code)
        local lines = cli.lines(out)
        assert.equal(2, #lines)
        local first = cjson.decode(lines[1])
        assert.equal("input", first.kind)
        assert.matches("not UTF%-8", first.message)
        assert.is_true(cjson.decode(lines[2]).ok)
    end)
end)
