--- `delete`, `activate`, `deactivate`, `revoke-tokens` and `delete-device`:
-- one call per user, for the ids given or for every user a filter matches,
-- with a JSON result line per user on stdout.
--
-- By filter, the command first counts the matching users and asks before
-- changing them (unless `--yes`); then it walks them page by page, a page's
-- calls in flight together. The walk goes one page at a time so that each
-- listing sees the changes of the last one: users that leave the filter
-- (deactivated, deleted) do not make it skip others.
-- @module passage.cli.commands.change
local paginator = require "passage.paginator"
local calls = require "passage.cli.calls"
local json = require "passage.cli.json"
local output = require "passage.cli.output"
local progress = require "passage.cli.progress"
local where = require "passage.cli.where"

local change = {}

local OPERATION = {
    delete = "delete_user",
    activate = "activate_user",
    deactivate = "deactivate_user",
    ["revoke-tokens"] = "revoke_user_refresh_tokens",
}

-- Runs a batch and writes its result lines; returns how many failed.
local function run_batch(ctx, batch, counts, bar)
    local results = calls.run(ctx.client, batch, ctx.args.in_flight, function(done)
        bar:update(counts.done + done)
    end)
    local out, failed = {}, 0
    for i, call in ipairs(batch) do
        local r = results[i]
        local line
        if r.input then
            line = calls.input_error(r.input)
            line.id = call[3]
        else
            line = calls.result_line(call, r)
        end
        failed = failed + (line.ok and 0 or 1)
        out[i] = json.encode(line) .. "\n"
    end
    output.out(table.concat(out))
    counts.done = counts.done + #batch
    counts.failed = counts.failed + failed
    return failed
end

local function confirm(ctx, count, what)
    if ctx.args.yes then
        return true
    end
    output.err(string.format("%d users match. %s them? [y/N] ", count, what))
    local answer = io.stdin:read("*l")
    if answer == nil then
        output.err("\n")
        return nil, "not confirmed (no answer on stdin): pass --yes to run without asking"
    end
    return answer:match("^%s*[yY][eE]?[sS]?%s*$") ~= nil
end

local function by_filter(ctx, op)
    local args = ctx.args
    local params, problem = where.add({}, args.where)
    if not params then
        return nil, problem
    end
    local counting = { limit = 1 }
    for k, v in pairs(params) do
        counting[k] = v
    end
    local first, err = ctx.client:list_paginated_users(ctx.app_id, counting)
    if not first then
        output.say("%s", tostring(err))
        return 1
    end
    local count = first.total_users
    if count == 0 then
        output.say("no user matches")
        return 0
    end
    local yes, why = confirm(ctx, count, (args.command:gsub("^%l", string.upper)))
    if yes == nil then
        return nil, why
    elseif not yes then
        output.say("nothing changed")
        return 0
    end
    local bar = progress.new { label = args.command, unit = "users", enabled = ctx.progress }
    bar:update(0, count)
    local counts = { done = 0, failed = 0 }
    params.limit = 500
    local ok, werr = pcall(function()
        for page in paginator.pages(ctx.client, ctx.app_id, params) do
            local batch = {}
            for i, u in ipairs(page.users) do
                batch[i] = { op, ctx.app_id, u.id }
            end
            run_batch(ctx, batch, counts, bar)
        end
    end)
    bar:finish()
    if not ok then
        output.say("stopped after %d users: %s", counts.done, tostring(werr))
        return 1
    end
    output.say("%s: %d users, %d failed", args.command, counts.done, counts.failed)
    return counts.failed > 0 and 1 or 0
end

--- Runs the command; returns the exit status.
-- @tparam table ctx `client`, `app_id`, `args`, `progress`
-- @treturn number
-- @return nil and a usage message
function change.run(ctx)
    local args = ctx.args
    if args.command == "delete-device" then
        local batch = { { "delete_user_device", ctx.app_id, args.user_id, args.device_id } }
        local bar = progress.new { label = "", unit = "", enabled = false }
        args.in_flight = 1
        return run_batch(ctx, batch, { done = 0, failed = 0 }, bar) > 0 and 1 or 0
    end
    local op = OPERATION[args.command]
    if type(args.in_flight) ~= "number" or args.in_flight < 1 or args.in_flight % 1 ~= 0 then
        return nil, "--in-flight: expected a whole number >= 1"
    end
    local ids, filtered = args.user_id or {}, args.where and args.where[1]
    if ids[1] and filtered then
        return nil, "give user ids or --where, not both"
    elseif filtered then
        return by_filter(ctx, op)
    elseif not ids[1] then
        return nil, "give user ids, or --where filters"
    end
    local batch = {}
    for i, id in ipairs(ids) do
        batch[i] = { op, ctx.app_id, id }
    end
    local bar = progress.new { label = args.command, unit = "users",
        enabled = ctx.progress and #batch > 1 }
    bar:update(0, #batch)
    local failed = run_batch(ctx, batch, { done = 0, failed = 0 }, bar)
    bar:finish()
    return failed > 0 and 1 or 0
end

return change
