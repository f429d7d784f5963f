--- `delete`, `activate`, `deactivate`, `revoke-tokens` and `delete-device`:
-- one call per user, for the ids given or for every user a filter matches,
-- with a JSON result line per user on stdout, written as each call ends.
--
-- By filter, the command first counts the matching users and asks before
-- changing them (unless `--yes`); then it walks them page by page, a page's
-- calls in flight together. The walk goes one page at a time so that each
-- listing sees the changes of the last one: users that leave the filter
-- (deactivated, deleted) do not make it skip others. The counts it reports
-- are of the result lines, so they are exactly what was changed.
-- @module passage.cli.commands.change
local filters = require "passage.filters"
local paginator = require "passage.paginator"
local calls = require "passage.cli.calls"
local flags = require "passage.cli.flags"
local json = require "passage.cli.json"
local output = require "passage.cli.output"
local progress = require "passage.cli.progress"
local runner = require "passage.cli.runner"
local signals = require "passage.cli.signals"
local where = require "passage.cli.where"

local change = {}

local SUMMARY = {
    delete = "Delete users",
    activate = "Activate users",
    deactivate = "Deactivate users",
    ["revoke-tokens"] = "Revoke users' refresh tokens",
}

--- Sets up the command's arguments and options.
-- @param cmd an argparse command
-- @tparam table entry its `passage.cli.command_list` entry
function change.setup(cmd, entry)
    if entry.name == "delete-device" then
        cmd:summary("Delete one of a user's devices.")
        cmd:argument("user_id")
        cmd:argument("device_id")
        return
    end
    local summary = SUMMARY[entry.name] or entry.operation
    cmd:summary(summary .. ".")
        :description(summary .. ": the users given by id, or every user a --where filter matches "
            .. "(after a count and a confirmation, unless --yes). One result line per user.")
    cmd:argument("user_id"):args("*"):description("user ids")
    flags.where(cmd)
    cmd:flag("-y --yes"):description("do not ask for confirmation")
    flags.in_flight(cmd, 16, "calls in flight at once")
end

-- Runs the calls `next` gives and writes their result lines; returns the
-- run and the counts.
local function run_calls(ctx, next, bar)
    signals.install() -- after any confirmation: a Ctrl-C at the prompt ends it at once
    local counts = { ok = 0, failed = 0 }
    local run = runner.new {
        client = ctx.client,
        in_flight = ctx.args.in_flight,
        next = next,
        write = function(entry)
            local line = entry.result
            line.id = line.id or entry.call[3]
            if line.ok then
                counts.ok = counts.ok + 1
            else
                counts.failed = counts.failed + 1
            end
            bar:clear()
            output.out(json.encode(line) .. "\n")
        end,
        flush = function()
            io.stdout:flush()
        end,
        progress = function(done)
            bar:update(done)
        end,
    }
    return run:run(), counts
end

-- The exit status and the summary line of a run.
local function outcome(ctx, run, counts)
    local changed = ctx.args.command == "revoke-tokens" and "done" or "changed"
    if run.stopped then
        output.say("%s stopped by %s: %d users %s, %d failed%s", ctx.args.command,
            signals.name() or "a signal", counts.ok, changed, counts.failed,
            run.cancelled and " (calls in flight cancelled)" or "")
        return signals.exit_status() or 1
    end
    output.note("%s: %d users %s, %d failed", ctx.args.command, counts.ok, changed, counts.failed)
    return counts.failed > 0 and 1 or 0
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

-- The next call of a walk by filter: the users of a page, then (once the
-- page's calls are done) the next page.
local function filter_source(ctx, op, params)
    local next_page, walk = paginator.pages(ctx.client, ctx.app_id, params)
    local users, at = {}, 1
    return function(running)
        if at > #users then
            if running > 0 then
                return false
            end
            local page = next_page(walk)
            if not page then
                return nil
            end
            users, at = page.users, 1
            if not users[1] then
                return nil
            end
        end
        local user = users[at]
        at = at + 1
        return { call = { op, ctx.app_id, user.id } }
    end
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
    if not (filters.is_whole(count) and count >= 0) then
        output.say("the server sent a count of matching users that is not a whole number: %s",
            tostring(count))
        return 1
    elseif count == 0 then
        output.note("no user matches")
        return 0
    end
    local yes, why = confirm(ctx, count, (args.command:gsub("^%l", string.upper)))
    if yes == nil then
        return nil, why
    elseif not yes then
        output.note("nothing changed")
        return ctx.exit.USAGE -- as the manual says: not confirmed
    end
    local bar = progress.new { label = args.command, unit = "users", enabled = ctx.progress }
    bar:update(0, count)
    params.limit = 500
    local source = filter_source(ctx, op, params)
    local ok, run, counts = pcall(run_calls, ctx, source, bar)
    bar:finish()
    if not ok then
        signals.pass_interrupt(run)
        output.say("%s stopped: %s", args.command, tostring(run))
        return 1
    end
    return outcome(ctx, run, counts)
end

--- Runs the command; returns the exit status.
-- @tparam table ctx `client`, `app_id`, `args`, `progress`
-- @treturn number
-- @return nil and a usage message
function change.run(ctx)
    local args = ctx.args
    if args.command == "delete-device" then
        args.in_flight = 1
        local call = { "delete_user_device", ctx.app_id, args.user_id, args.device_id }
        local sent = false
        local bar = progress.new { label = "", unit = "", enabled = false }
        local run, counts = run_calls(ctx, function()
            if sent then
                return nil
            end
            sent = true
            return { call = call }
        end, bar)
        return outcome(ctx, run, counts)
    end
    local op = ctx.entry.operation
    local bad = calls.in_flight_problem(ctx.client, args.in_flight)
    if bad then
        return nil, bad
    end
    local ids, filtered = args.user_id or {}, args.where and args.where[1]
    if ids[1] and filtered then
        return nil, "give user ids or --where, not both"
    elseif filtered then
        return by_filter(ctx, op)
    elseif not ids[1] then
        return nil, "give user ids, or --where filters"
    end
    local bar = progress.new { label = args.command, unit = "users",
        enabled = ctx.progress and #ids > 1 }
    bar:update(0, #ids)
    local at = 0
    local run, counts = run_calls(ctx, function()
        at = at + 1
        return ids[at] and { call = { op, ctx.app_id, ids[at] } } or nil
    end, bar)
    bar:finish()
    return outcome(ctx, run, counts)
end

return change
