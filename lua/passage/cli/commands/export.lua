--- `export`: every matching user, exactly once, one per line (JSON Lines or
-- CSV), to a file or stdout, through the paginator with pages in flight.
--
-- A file is written as `<file>.part` and renamed when the walk is complete,
-- so a file of that name is always a whole export.
-- @module passage.cli.commands.export
local paginator = require "passage.paginator"
local output = require "passage.cli.output"
local progress = require "passage.cli.progress"
local users_format = require "passage.cli.users_format"
local where = require "passage.cli.where"

local export = {}

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
    local in_flight = args.in_flight
    local write, file, part = output.out, nil, nil
    if args.out and args.out ~= "-" then
        part = args.out .. ".part"
        local err
        file, err = io.open(part, "wb")
        if not file then
            output.say("cannot write %s", tostring(err))
            return 1
        end
        write = output.to_file(file)
    end
    local bar = progress.new { label = "export", unit = "users", enabled = ctx.progress }
    local line = users_format.json_line
    if args.format == "csv" then
        line = users_format.csv_line
        write(users_format.csv_header())
    end
    local count = 0
    local ok, err = pcall(function()
        local opts = { in_flight = in_flight, progress = function(p)
            bar:update(p.users, p.total_users)
        end }
        for page in paginator.pages(ctx.client, ctx.app_id, params, opts) do
            local out, users = {}, page.users
            for i = 1, #users do
                out[i] = line(users[i])
            end
            write(table.concat(out))
            count = count + #users
        end
    end)
    bar:finish()
    if file then
        file:close()
    end
    if not ok then
        if type(err) == "string" and err:find("passage.users: ", 1, true) then
            error(err, 0) -- a bad argument: main reports it as usage
        end
        output.say("export stopped after %d users: %s", count, tostring(err))
        if part then
            output.say("the users written so far are in %s", part)
        end
        return 1
    end
    if part then
        local renamed, rerr = os.rename(part, args.out)
        if not renamed then
            output.say("cannot rename %s: %s", part, tostring(rerr))
            return 1
        end
    end
    if ctx.verbose then
        output.say("exported %d users", count)
    end
    return 0
end

return export
