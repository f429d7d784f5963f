--- `list`: one page of users, as a table, JSON, JSON Lines or CSV.
-- @module passage.cli.commands.list
local filters = require "passage.filters"
local calls = require "passage.cli.calls"
local user = require "passage.cli.commands.user"
local flags = require "passage.cli.flags"
local output = require "passage.cli.output"
local progress = require "passage.cli.progress"
local users_format = require "passage.cli.users_format"
local json = require "passage.cli.json"
local where = require "passage.cli.where"

local list = {}

--- Sets up the command's options.
-- @param cmd an argparse command
function list.setup(cmd)
    cmd:summary("List one page of users.")
        :description("List one page of users, filtered and ordered. A table on a terminal, "
            .. "JSON Lines otherwise.")
    flags.list_params(cmd)
    flags.csv_raw(cmd, "CSV cells as they are: no ' before a formula-like value")
    cmd:option("--format"):choices { "table", "json", "jsonl", "csv" }
        :description("table, json, jsonl or csv (default: table on a terminal, else jsonl)")
end

--- Runs the command; returns the exit status.
-- @tparam table ctx `client`, `app_id`, `args`
-- @treturn number
-- @return nil and a usage message
function list.run(ctx)
    local args = ctx.args
    local params, problem = where.from_args(args)
    if not params then
        return nil, problem
    end
    params.limit = args.limit
    params.page = args.page
    params.created_before = args.created_before
    local page, err = calls.one(ctx.client, "list_paginated_users", ctx.app_id, params)
    if not page then
        return user.show(page, err)
    end
    local format = args.format or (progress.isatty(io.stdout) and "table" or "jsonl")
    local users = page.users
    if format == "table" then
        output.out(users_format.table(users))
        local total, number, limit = page.total_users, page.page, page.limit
        if not (filters.is_whole(total) and filters.is_whole(number) and filters.is_whole(limit))
        then
            -- The library checks that they are numbers; not that they make sense.
            output.say("the server sent counts that are not whole numbers (total_users %s, "
                .. "page %s, limit %s)", tostring(total), tostring(number), tostring(limit))
            return 1
        end
        local pages = math.max(1, math.ceil(total / math.max(1, limit)))
        output.out(string.format("page %d of %d, %d users shown of %d\n",
            number, pages, #users, total))
    elseif format == "json" then
        output.out(json.pretty(users) .. "\n")
    else
        local out = {}
        if format == "csv" then
            out[1] = users_format.csv_header()
        end
        for _, u in ipairs(users) do
            out[#out + 1] = format == "csv" and users_format.csv_line(u, args.csv_raw)
                or users_format.json_line(u)
        end
        output.out(table.concat(out))
    end
    return 0
end

return list
