--- `export`: every matching user, exactly once, one per line (JSON Lines or
-- CSV), to a file or stdout, through the paginator with pages in flight.
--
-- `-o <file>` writes as `passage.cli.output_file` says: through
-- `<file>.part` and a rename for a regular file, directly to a FIFO or a
-- device. A SIGINT or SIGTERM stops the walk after the page it waits for;
-- what was written stays (the `.part` of a regular file).
-- @module passage.cli.commands.export
local paginator = require "passage.paginator"
local flags = require "passage.cli.flags"
local output = require "passage.cli.output"
local output_file = require "passage.cli.output_file"
local progress = require "passage.cli.progress"
local signals = require "passage.cli.signals"
local users_format = require "passage.cli.users_format"
local where = require "passage.cli.where"

local export = {}

--- Sets up the command's options.
-- @param cmd an argparse command
function export.setup(cmd)
    cmd:summary("Write every matching user, one per line.")
        :description("Walk every matching user (each exactly once) and write one per line.")
    flags.filters(cmd)
    flags.where(cmd)
    cmd:option("--order-by"):argname("<field:ASC|DESC,...>")
    flags.in_flight(cmd, 4, "pages in flight at once")
    cmd:option("-o --out"):argname("<file>"):description("write here (default: stdout)")
    cmd:option("--format"):choices { "jsonl", "csv" }:default("jsonl")
    flags.csv_raw(cmd, "CSV cells as they are: no ' before a value a spreadsheet would run "
        .. "as a formula (=, +, -, @)")
end

-- Walks the users, writing each page; returns how many were written and
-- whether a signal stopped the walk.
local function walk(ctx, params, write, bar)
    local line = users_format.json_line
    if ctx.args.format == "csv" then
        local raw = ctx.args.csv_raw
        line = function(user)
            return users_format.csv_line(user, raw)
        end
    end
    local opts = { in_flight = ctx.args.in_flight, progress = function(p)
        bar:update(p.users, p.total_users)
    end }
    local count = 0
    for page in paginator.pages(ctx.client, ctx.app_id, params, opts) do
        local out, users = {}, page.users
        for i = 1, #users do
            out[i] = line(users[i])
        end
        write(table.concat(out))
        count = count + #users
        if signals.count() > 0 then
            return count, true
        end
    end
    return count, false
end

-- The output: stdout, or the -o file.
local function open_output(args)
    if not args.out or args.out == "-" then
        return { write = function(s)
            output.out(s)
            io.stdout:flush()
        end, finish = function() return true end, stop = function() end }
    end
    return output_file.open(args.out)
end

--- Runs the command; returns the exit status.
-- @tparam table ctx `client`, `app_id`, `args`, `progress` (false: no bar)
-- @treturn number
-- @return nil and a usage message
function export.run(ctx)
    local args = ctx.args
    local params, problem = where.from_args(args)
    if not params then
        return nil, problem
    end
    signals.install(true)
    local out, oerr = open_output(args)
    if not out then
        output.say("-o: %s", oerr)
        return 1
    end
    local bar = progress.new { label = "export", unit = "users", enabled = ctx.progress }
    if args.format == "csv" then
        out.write(users_format.csv_header())
    end
    local ok, count, stopped = pcall(walk, ctx, params, out.write, bar)
    bar:finish()
    if not ok or stopped then
        local partial = out.stop()
        if not ok and type(count) == "string" and count:find("passage.users: ", 1, true) then
            error(count, 0) -- a bad argument: main reports it as usage
        end
        if not ok then
            signals.pass_interrupt(count)
        end
        if stopped then
            output.say("export stopped by %s after %d users", signals.name(), count)
        else
            output.say("export stopped: %s", tostring(count))
        end
        if partial then
            output.say("the users written so far are in %s", partial)
        end
        return stopped and signals.exit_status() or 1
    end
    local finished, ferr = out.finish()
    if not finished then
        output.say("%s", ferr)
        return 1
    end
    if ctx.verbose then
        output.note("exported %d users", count)
    end
    return 0
end

return export
