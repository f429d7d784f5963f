--- `passage-users`: parses the command line, makes the client, runs the
-- command and turns the outcome into the exit status.
--
-- Exit status: 0 when every call succeeded, 1 when some failed (or a run
-- stopped on an error), 2 for a usage error (bad arguments, missing
-- configuration, a run not confirmed), 130 or 143 when SIGINT or SIGTERM
-- stopped it. A bad argument the library refuses is a usage error too.
-- Whatever goes wrong, the command prints `passage-users: ...`, never a
-- Lua traceback or a path of its own files.
-- @module passage.cli.main
local errors = require "passage.errors"
local command_list = require "passage.cli.command_list"
local config = require "passage.cli.config"
local output = require "passage.cli.output"
local parser = require "passage.cli.parser"
local signals = require "passage.cli.signals"

local main = {}

main.OK, main.FAILED, main.USAGE = 0, 1, 2

local function usage(message)
    output.say("%s (see passage-users --help)", message)
    return main.USAGE
end

-- A message the library raised for a bad argument, without its position.
local function argument_message(e)
    return type(e) == "string" and e:match("passage%.users: (.*)$")
end

-- An error's text without the Lua file and line it was raised at.
local function without_position(e)
    return (tostring(e):gsub("^[^\n]-%.lua:%d+: ", ""))
end

local function run_command(list)
    local p = parser.new()
    local ok, args = p:pparse(list)
    if not ok then
        return usage(args)
    end
    local client, app_id, described = config.client(args)
    if not client then
        return usage(app_id)
    end
    output.quiet = args.quiet
    if args.verbose then
        output.say("%s", described)
    end
    local ctx = {
        client = client,
        app_id = app_id,
        args = args,
        verbose = args.verbose,
        progress = not (args.no_progress or args.quiet),
        exit = main,
        entry = command_list.find(args.command),
    }
    local command = require("passage.cli.commands." .. ctx.entry.module)
    local done, status, problem = pcall(command.run, ctx)
    client:close()
    if not done then
        local message = argument_message(status)
        if not message then
            error(status, 0)
        end
        return usage(message)
    end
    if status == nil then
        return usage(problem)
    end
    return status
end

--- Runs the command line; returns the exit status.
-- @tparam {string,...} argv the arguments (as the global `arg`)
-- @treturn number 0, 1, 2, 130 or 143
function main.run(argv)
    local list = {}
    for i = 1, #argv do
        list[i] = argv[i]
    end
    config.hide_secrets(list)
    local ok, status = pcall(run_command, list)
    if ok then
        return status
    end
    -- Without lua-luv, the interpreter's own SIGINT handler raises this.
    if errors.is_interrupt(status) then
        signals.note("sigint")
        io.stdout:flush()
        output.say("stopped by SIGINT")
        return signals.exit_status()
    end
    output.say("%s", without_position(status))
    return main.FAILED
end

return main
