--- `import` (also `bulk`): run each record of a JSON Lines or CSV file,
-- many calls in flight, and write one result line per record.
--
-- A result line is JSON: the record's `line` number, `ok`, the `operation`
-- and the user `id`, or the error's `kind` (`input` for a record that could
-- not be read or is not a valid request), `status`, `code` and `message`.
-- Each line is written (and flushed) as soon as its record and every
-- record before it are done. `--dry-run` checks every record and writes
-- what would be sent instead; `--rerun <results>` runs only the records
-- that failed in an earlier run's results, keeping their line numbers.
-- @module passage.cli.commands.import
local calls = require "passage.cli.calls"
local flags = require "passage.cli.flags"
local input = require "passage.cli.input"
local json = require "passage.cli.json"
local output = require "passage.cli.output"
local progress = require "passage.cli.progress"
local records = require "passage.cli.records"
local restore = require "passage.cli.restore"
local runner = require "passage.cli.runner"
local server_checks = require "passage.cli.server_checks"
local signals = require "passage.cli.signals"

local import = {}

--- Sets up the command's arguments and options.
-- @param cmd an argparse command
function import.setup(cmd)
    cmd:summary("Create or update users from a file.")
        :description("Read JSON Lines or CSV records and run each: a record with an id "
            .. "updates that user, one without creates one; an `op` field (create, update, "
            .. "delete, activate, deactivate, revoke-tokens, delete-device) says otherwise. "
            .. "Writes one result line per record (its line number, and the user id or the "
            .. "error).")
    cmd:argument("file"):description("input file, - for stdin")
    cmd:option("--input-format"):choices { "jsonl", "csv" }
        :description("jsonl or csv (default: by the file name, else jsonl)")
    flags.in_flight(cmd, 16, "calls in flight at once")
    cmd:flag("-n --dry-run"):description("check every record and show what would be sent; "
        .. "send nothing")
    cmd:option("--rerun"):argname("<results>")
        :description("run only the records that failed in these results of an earlier run")
    cmd:option("--results"):argname("<file>"):description("write results here (default: stdout)")
    flags.csv_raw(cmd, "CSV cells as they are: do not remove the ' an export puts before "
        .. "a formula-like value")
    flags.restore(cmd)
end

-- The line numbers that failed in a results file.
local function failed_lines(path)
    local file, err = io.open(path, "rb")
    if not file then
        return nil, "--rerun: " .. tostring(err)
    end
    local failed, n = {}, 0
    local text_line = 0
    for text in file:lines() do
        text_line = text_line + 1
        if text:find("%S") then
            local r = json.decode(text)
            if type(r) ~= "table" or type(r.line) ~= "number" or type(r.ok) ~= "boolean" then
                file:close()
                return nil, string.format("--rerun: %s line %d is not a result line", path,
                    text_line)
            end
            if not r.ok and not failed[r.line] then
                -- The record's fingerprint when the line has one, to check
                -- the input is the one these results came from.
                failed[r.line], n = type(r.record) == "string" and r.record or true, n + 1
            end
        end
    end
    file:close()
    return failed, n
end

-- How many records a regular file holds (for the progress bar's total);
-- nil for anything that can be read only once.
local function count_records(path, format, only)
    local reader = input.open(path)
    if not (reader and reader.regular) then
        if reader then
            reader:close()
        end
        return nil
    end
    local n = 0
    for line_no in records.read(reader:lines(), format, true) do
        if only == nil or only[line_no] then
            n = n + 1
        end
    end
    reader:close()
    return n
end

-- Says once per field name that a record's field is not a user's.
local function report_unknown(ctx, line_no, rec)
    for _, name in ipairs(records.unknown_fields(rec)) do
        if not ctx.reported[name] then
            ctx.reported[name] = true
            output.say("line %d: field %q is not one import sets: ignored (said once)", line_no,
                name)
        end
    end
end

-- Whether a record is matched by identifier (passage.cli.restore): with
-- --restore every record, with --on-exists those that create a user.
local function matched(args, rec)
    return args.restore or (args.on_exists and rec.id == nil and rec.op == nil)
end

-- The call of a record and its request, or nil and an input error.
local function call_of(ctx, rec)
    if matched(ctx.args, rec) then
        local entry, problem = restore.entry(ctx.app_id, rec, {
            on_exists = ctx.args.on_exists or "fail", status = ctx.args.restore })
        if not entry then
            return nil, problem
        end
        -- What a dry run checks: the create the chain may send.
        local req = records.request(rec)
        return entry, req, { "create_user", ctx.app_id, req }
    end
    local call, req = records.call(ctx.app_id, rec)
    if not call then
        return nil, req
    end
    return { call = call }, req, call
end

-- The entry of one record: a call (or a chain) to run, or its result
-- already (an input error, or what a dry run would send).
local function entry_of(ctx, line_no, rec, problem)
    local entry, req, checked, request
    if rec then
        report_unknown(ctx, line_no, rec)
        entry, req, checked = call_of(ctx, rec)
        problem = not entry and req or nil
    end
    if not problem and ctx.args.dry_run then
        request, problem = calls.check(ctx.client, checked)
        problem = problem or ctx.server_check(checked, request, line_no)
    end
    if problem then
        entry = { result = calls.input_error(problem) }
    elseif ctx.args.dry_run then
        entry = { result = { ok = true, dry_run = true,
            operation = entry.step and "restore" or checked[1],
            id = not entry.step and type(checked[3]) == "string" and checked[3] or nil,
            method = request.method, url = request.url, request = req } }
    end
    entry.line = line_no
    return entry
end

-- Whether two paths name one file (a results file that is the input would
-- be emptied before it is read).
local function same_file(a, b)
    local uv = signals.uv
    if not (uv and a and b and b ~= "-") then
        return a == b
    end
    local sa, sb = uv.fs_stat(a), uv.fs_stat(b)
    return sa ~= nil and sb ~= nil and sa.ino == sb.ino and sa.dev == sb.dev
end

-- The failed lines of --rerun results that were not records of this
-- input: results of another input. Nil when every one was found.
local function lines_not_found(only, seen)
    local missing = {}
    for line_no in pairs(only) do
        if not seen[line_no] then
            missing[#missing + 1] = line_no
        end
    end
    if not missing[1] then
        return nil
    end
    table.sort(missing)
    return missing
end

-- Where result lines go: stdout, or the --results file.
local function results_writer(args)
    if not args.results then
        return output.out, function()
            io.stdout:flush()
        end
    end
    if same_file(args.results, args.file) or (args.rerun and same_file(args.results, args.rerun))
    then
        return nil, "--results: " .. args.results .. " is also an input: writing it would lose it"
    end
    local file, err = io.open(args.results, "wb")
    if not file then
        return nil, "--results: " .. tostring(err)
    end
    return output.to_file(file), function()
        file:flush()
    end, file
end

local function summary(ctx, run, counts, reader)
    local args = ctx.args
    if reader.failure then
        output.say("input stopped at line %d: %s", counts.last_line + 1, reader.failure)
    end
    if run.stopped then
        output.say("%s stopped by %s: %d records done (%d ok, %d failed); nothing after "
            .. "line %d was sent%s", args.command, signals.name() or "a signal", run.done,
            counts.ok, counts.failed, counts.last_line,
            run.cancelled and "; calls in flight were cancelled" or "")
        return signals.exit_status() or 1
    elseif args.dry_run then
        output.note("dry run: %d records valid, %d not; nothing sent", counts.ok, counts.failed)
    else
        output.note("%s: %d records, %d ok, %d failed", args.command, run.done, counts.ok,
            counts.failed)
    end
    return (counts.failed > 0 or reader.failure) and 1 or 0
end

-- The run of every record: `state` holds the reader, the records
-- selected (`only`), the output and the counts.
local function new_run(ctx, state)
    local next_record = records.read(state.reader:lines(), state.format, ctx.args.csv_raw)
    local counts, bar = state.counts, state.bar
    return runner.new {
        client = ctx.client,
        in_flight = ctx.args.in_flight,
        next = function()
            while true do
                local line_no, rec, problem, fingerprint = next_record()
                if line_no == nil then
                    return nil
                end
                counts.last_line = line_no
                local wanted = state.only == nil or state.only[line_no]
                if wanted then
                    state.seen[line_no] = true
                    if type(wanted) == "string" and fingerprint and wanted ~= fingerprint then
                        state.differ = (state.differ or 0) + 1
                        problem, rec = "not the record that failed on this line in "
                            .. ctx.args.rerun .. " (results of another input?)", nil
                    end
                    local entry = entry_of(ctx, line_no, rec, problem)
                    entry.fingerprint = fingerprint
                    return entry
                end
            end
        end,
        write = function(entry)
            local r = entry.result
            r.line = entry.line
            r.record = entry.fingerprint
            if r.ok then
                counts.ok = counts.ok + 1
            else
                counts.failed = counts.failed + 1
            end
            if not state.results_file then
                bar:clear()
            end
            state.write(json.encode(r) .. "\n")
        end,
        flush = state.flush,
        progress = function(done)
            bar:update(done, state.total)
        end,
    }
end

-- The records --rerun selects: a set of line numbers, or nil for all; or
-- false and a message (a usage error), or false and nil (nothing to run).
local function selected_lines(args)
    if not args.rerun then
        return nil
    end
    local only, selected = failed_lines(args.rerun)
    if not only then
        return false, selected
    end
    if selected == 0 then
        output.note("no failed record in %s: nothing to run", args.rerun)
        return false
    end
    return only
end

--- Runs the command; returns the exit status.
-- @tparam table ctx `client`, `app_id`, `args`, `progress`
-- @treturn number
-- @return nil and a usage message
function import.run(ctx)
    local args = ctx.args
    local bad = calls.in_flight_problem(ctx.client, args.in_flight)
    if bad then
        return nil, bad
    end
    signals.install()
    local only, why = selected_lines(args)
    if only == false then
        if why then
            return nil, why
        end
        return 0
    end
    local state = { only = only, seen = {}, counts = { ok = 0, failed = 0, last_line = 0 },
        format = args.input_format or records.format_of(args.file) }
    local ierr
    state.reader, ierr = input.open(args.file)
    if not state.reader then
        return nil, tostring(ierr)
    end
    state.write, state.flush, state.results_file = results_writer(args)
    if not state.write then
        state.reader:close()
        return nil, state.flush
    end
    state.bar = progress.new { label = args.dry_run and "check" or "import", unit = "records",
        enabled = ctx.progress and not args.dry_run }
    -- Only a regular file can be read twice: anything else is not counted
    -- (opening a FIFO again would take data from the run).
    state.total = state.bar.enabled and state.reader.regular
        and count_records(args.file, state.format, only) or nil
    state.bar:update(0, state.total)
    ctx.server_check, ctx.reported = server_checks.new(), {}

    local run = new_run(ctx, state)
    state.reader.idle = function()
        return run:idle()
    end
    run:run()
    state.bar:finish()
    state.reader:close()
    if state.results_file then
        state.results_file:close()
    end
    local status = summary(ctx, run, state.counts, state.reader)
    local missing = only and not run.stopped and not state.reader.failure
        and lines_not_found(only, state.seen)
    if missing then
        output.say("--rerun: %d failed lines of %s are not records of %s (first: line %d): "
            .. "are these the results of another input?", #missing, args.rerun, args.file,
            missing[1])
        return 1
    end
    if state.differ then
        output.say("--rerun: %d records of %s differ from those that failed in %s: not run",
            state.differ, args.file, args.rerun)
        return 1
    end
    return status
end

return import
