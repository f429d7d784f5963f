--- SIGINT and SIGTERM, as counts the command looks at between calls.
--
-- Lua has no signal API, and the interpreter's own SIGINT handler raises
-- "interrupted!" wherever the program happens to be, which tears through
-- the library in the middle of a call. With lua-luv (libuv) installed, the
-- signals are caught instead: each one is only counted, and the command
-- decides at a safe point what to do (the first stops starting work, the
-- second cancels what is in flight). Commands of one call do not catch
-- them: Ctrl-C stops them at once. Without lua-luv, the interpreter's
-- default stays and `passage.cli.main` turns its "interrupted!" into a
-- clean exit.
-- @module passage.cli.signals
local errors = require "passage.errors"

local signals = {}

local ok_uv, uv = pcall(require, "luv")

--- libuv (lua-luv), or nil when it is not installed.
signals.uv = ok_uv and uv or nil

local received = {} -- the signals caught, in order ("sigint", "sigterm")
local installed = false

-- The exit status of a command stopped by a signal: 128 + its number.
local EXIT_STATUS = { sigint = 130, sigterm = 143 }

--- Starts catching SIGINT and SIGTERM (once; later calls do nothing).
--
-- A command that keeps the hand between calls (import, changes) catches
-- every signal: the second cancels what is in flight. A command that
-- waits inside the library (export's walk) catches only the first
-- (`once`): it stops after the page it waits for, and a second signal
-- ends the process at once, as the signal's default does.
-- @tparam[opt] bool once catch only the first signal of each kind
-- @treturn bool whether signals are caught (false without lua-luv)
function signals.install(once)
    if not ok_uv then
        return false
    end
    if not installed then
        installed = true
        for name in pairs(EXIT_STATUS) do
            local handle = uv.new_signal()
            local function on_signal(caught)
                received[#received + 1] = caught
            end
            if once then
                uv.signal_start_oneshot(handle, name, on_signal)
            else
                handle:start(name, on_signal)
            end
        end
    end
    return true
end

--- How many signals arrived so far.
-- @treturn int
function signals.count()
    if installed then
        uv.run("nowait")
    end
    return #received
end

--- The exit status for the first signal (130 for SIGINT, 143 for
-- SIGTERM), or nil when none arrived.
-- @treturn ?int
function signals.exit_status()
    return received[1] and EXIT_STATUS[received[1]]
end

--- The first signal's name, as `SIGINT`.
-- @treturn ?string
function signals.name()
    return received[1] and received[1]:upper()
end

--- Raises `problem` again when it is the interpreter's own "interrupted!"
-- (lua-luv missing): a `pcall` that guards one record must not take a
-- Ctrl-C for that record's failure and go on with the next.
-- @param problem what a `pcall` caught
function signals.pass_interrupt(problem)
    if errors.is_interrupt(problem) then
        error(problem, 0)
    end
end

--- Records a signal the interpreter reported itself (its "interrupted!"
-- error, when lua-luv is missing).
-- @tparam string name "sigint" or "sigterm"
function signals.note(name)
    received[#received + 1] = name
end

return signals
