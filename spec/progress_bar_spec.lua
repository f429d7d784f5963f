-- passage-users' progress bar, in a real terminal: the command runs in a
-- tmux pane (a private tmux server), the pane is captured while it works
-- and after it ends. And no bar when stderr is not a terminal.
local emulator = require "support.emulator"
local cli = require "support.cli"

local APP, KEY = "cli_bar", "sk_bar_7Yt2mQ"
local IMPORT_APP = "cli_bar_import"
-- The private tmux server's socket, removed with the other files at the end.
local SOCKET = os.tmpname()
os.remove(SOCKET)

local function sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    return out
end

local function tmux(args)
    return sh("tmux -S " .. SOCKET .. " -f /dev/null " .. args)
end

local function sleep(seconds)
    os.execute("sleep " .. seconds)
end

local function command(args, app)
    local parts = { "env", "PASSAGE_API_KEY=" .. KEY, "PASSAGE_APP_ID=" .. (app or APP),
        "PASSAGE_BASE_URL=" .. emulator.url(), cli.BIN }
    for _, a in ipairs(args) do
        parts[#parts + 1] = cli.quote(a)
    end
    return table.concat(parts, " ")
end

-- Starts `shell_cmd` in a new pane (kept open after it ends) and captures
-- the pane every `every` seconds until the command's exit line shows. The
-- new session is made before the last one is killed: a server left with no
-- session exits, and a session made meanwhile would go with it.
local panes = 0
local function run_in_pane(shell_cmd, every, width, height)
    local script = shell_cmd .. "; echo EXIT=$?; sleep 60"
    panes = panes + 1
    local session = "bar" .. panes
    tmux(string.format("new-session -d -s %s -x %d -y %d ", session, width or 110, height or 10)
        .. cli.quote(script))
    if panes > 1 then
        tmux("kill-session -t bar" .. (panes - 1))
    end
    local captures = {}
    for _ = 1, 200 do
        sleep(every)
        local screen = tmux("capture-pane -p -t " .. session)
        captures[#captures + 1] = screen
        if screen:find("EXIT=%d") then
            return captures, screen
        end
    end
    error("the command did not end:\n" .. captures[#captures])
end

local function bar_lines(screen, label)
    local out = {}
    for line in screen:gmatch("[^\n]+") do
        if line:find("^" .. label .. " ") then
            out[#out + 1] = line
        end
    end
    return out
end

describe("the progress bar", function()
    local tmp = os.tmpname()

    setup(function()
        emulator.reset()
        emulator.add_app(APP, KEY)
        emulator.seed(APP, 3000, 4)
        emulator.add_app(IMPORT_APP, KEY)
        local lines = {}
        for n = 1, 120 do
            lines[n] = string.format('{"email":"bar%d@example.com"}', n)
        end
        local f = assert(io.open(tmp .. ".jsonl", "wb"))
        f:write(table.concat(lines, "\n"), "\n")
        f:close()
    end)

    teardown(function()
        emulator.faults { clear = true }
        tmux("kill-server")
        os.execute("rm -f " .. tmp .. "* " .. SOCKET)
    end)

    it("moves on a terminal and ends as one complete line", function()
        -- 120 creates, two at a time, each 40 ms late: about 2.4 s.
        emulator.faults { latency_ms = 40 }
        local captures, final = run_in_pane(command({ "import", tmp .. ".jsonl", "--in-flight", "2",
            "--results", tmp .. ".results" }, IMPORT_APP), 0.2)
        emulator.faults { latency_ms = 0 }
        local counts, last = {}, -1
        for _, screen in ipairs(captures) do
            local lines = bar_lines(screen, "import")
            assert.is_true(#lines <= 1, "the bar took more than one line:\n" .. screen)
            if lines[1] then
                local done = tonumber(lines[1]:match("%] (%d+)/120 records"))
                assert.is_number(done, lines[1])
                assert.is_true(done >= last, "the bar went back:\n" .. screen)
                if done ~= last then
                    counts[#counts + 1] = done
                end
                last = done
            end
        end
        assert.is_true(#counts >= 4, "the bar did not move: " .. table.concat(counts, ", "))
        -- It ends complete, with the rate and the time taken, and the
        -- command's summary starts on the next line.
        local lines = bar_lines(final, "import")
        assert.equal(1, #lines, final)
        assert.matches("^import %[#+%] 120/120 records 100%% [%d,]+/s in %d+s$", lines[1])
        assert.matches("120/120 records 100%%[^\n]*\npassage%-users: import: 120 records, 120 ok, "
            .. "0 failed\nEXIT=0\n", final)
        assert.is_nil(final:find("ETA", 1, true))
    end)

    it("shows a walk's users against total_users", function()
        emulator.faults { latency_ms = 150 }
        local captures, final = run_in_pane(command { "export", "--in-flight", "1",
            "-o", tmp .. ".export" }, 0.1)
        emulator.faults { latency_ms = 0 }
        local seen = {}
        for _, screen in ipairs(captures) do
            local line = bar_lines(screen, "export")[1]
            local done = line and line:match("%] ([%d,]+)/3,000 users")
            if done then
                seen[done] = true
            end
        end
        assert.is_true(seen["500"] or seen["1,000"] or seen["1,500"] or seen["2,000"] or false,
            "no bar while the walk ran")
        assert.matches("^export %[#+%] 3,000/3,000 users 100%%", bar_lines(final, "export")[1])
        assert.matches("EXIT=0", final)
    end)

    it("fits a narrow terminal and never shares a line with a result line", function()
        emulator.faults { latency_ms = 30 }
        -- Results to the same terminal: the bar is erased before each one.
        local captures, final = run_in_pane(command({ "import", tmp .. ".jsonl", "--in-flight",
            "2", "--on-exists", "skip" }, IMPORT_APP), 0.15, 44, 60)
        emulator.faults { latency_ms = 0 }
        assert.matches("EXIT=0", final)
        local bars = 0
        for _, screen in ipairs(captures) do
            for line in screen:gmatch("[^\n]+") do
                assert.is_true(#line <= 44, "wider than the terminal: " .. line)
                if line:find("records", 1, true) and not line:find("^passage%-users") then
                    bars = bars + 1
                    assert.is_nil(line:find("{", 1, true), "bar and result on one line: " .. line)
                    assert.matches("^import ", line)
                end
            end
        end
        assert.is_true(bars > 0, "no bar was seen")
    end)

    it("is not drawn when stderr is not a terminal, or with --no-progress", function()
        -- In the pane, stderr to a file: not a terminal.
        local _, final = run_in_pane(command { "export", "-o", tmp .. ".e2" } .. " 2>" .. tmp
            .. ".stderr", 0.1)
        assert.same({}, bar_lines(final, "export"))
        local f = assert(io.open(tmp .. ".stderr", "rb"))
        assert.equal("", f:read("*a"))
        f:close()
        -- In the pane, a terminal, but --no-progress.
        _, final = run_in_pane(command { "--no-progress", "export", "-o", tmp .. ".e3" }, 0.1)
        assert.same({}, bar_lines(final, "export"))
        -- Piped.
        local out, err, code = cli.run({ "export", "--format", "csv" }, { env = {
            PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = APP, PASSAGE_BASE_URL = emulator.url() } })
        assert.equal(0, code, err)
        assert.equal(3001, #cli.lines(out))
        assert.equal("", err)
    end)
end)
