--- `import` (also `bulk`): run each record of a JSON Lines or CSV file,
-- many calls in flight, and write one result line per record.
--
-- A result line is JSON: the record's `line` number, `ok`, the `operation`
-- and the user `id`, or the error's `kind` (`input` for a record that could
-- not be read or is not a valid request), `status`, `code` and `message`.
-- `--dry-run` checks every record and writes what would be sent instead;
-- `--rerun <results>` runs only the records that failed in an earlier run's
-- results, keeping their line numbers.
-- @module passage.cli.commands.import
local calls = require "passage.cli.calls"
local json = require "passage.cli.json"
local output = require "passage.cli.output"
local progress = require "passage.cli.progress"
local records = require "passage.cli.records"

local import = {}

-- Records read and run together: bounds memory, whatever the file's size.
local CHUNK = 1000

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
                failed[r.line], n = true, n + 1
            end
        end
    end
    file:close()
    return failed, n
end

local function open_input(path)
    if path == "-" then
        return io.stdin
    end
    return io.open(path, "rb")
end

-- How many records the input holds (for the progress bar's total).
local function count_records(path, format, only)
    local file = open_input(path)
    if not file then
        return nil
    end
    local n = 0
    for line_no in records.read(file:lines(), format) do
        if only == nil or only[line_no] then
            n = n + 1
        end
    end
    file:close()
    return n
end

--- Runs the command; returns the exit status.
-- @tparam table ctx `client`, `app_id`, `args`, `progress`
-- @treturn number
-- @return nil and a usage message
function import.run(ctx)
    local args = ctx.args
    local in_flight = args.in_flight
    if type(in_flight) ~= "number" or in_flight < 1 or in_flight % 1 ~= 0 then
        return nil, "--in-flight: expected a whole number >= 1"
    end
    local format = args.input_format or records.format_of(args.file)
    local only, selected
    if args.rerun then
        only, selected = failed_lines(args.rerun)
        if not only then
            return nil, selected
        end
        if selected == 0 then
            output.say("no failed record in %s: nothing to run", args.rerun)
            return 0
        end
    end
    local input, ierr = open_input(args.file)
    if not input then
        return nil, tostring(ierr)
    end
    local write, results_file = output.out, nil
    if args.results then
        local err
        results_file, err = io.open(args.results, "wb")
        if not results_file then
            input:close()
            return nil, "--results: " .. tostring(err)
        end
        write = output.to_file(results_file)
    end

    local bar = progress.new { label = args.dry_run and "check" or "import", unit = "records",
        enabled = ctx.progress and not args.dry_run }
    local total = nil
    if bar.enabled and args.file ~= "-" then
        total = count_records(args.file, format, only)
    end
    bar:update(0, total)

    local done, ok_count, failed = 0, 0, 0
    local pending = {} -- { line = n, call = c, result = r } of the current chunk
    local function flush()
        local batch, at = {}, {}
        for i, p in ipairs(pending) do
            if p.call then
                batch[#batch + 1] = p.call
                at[#batch] = i
            end
        end
        if batch[1] and not args.dry_run then
            local before = done
            local results = calls.run(ctx.client, batch, in_flight, function(n)
                bar:update(before + n, total)
            end)
            for j, r in ipairs(results) do
                local p = pending[at[j]]
                p.result = r.input and calls.input_error(r.input) or calls.result_line(p.call, r)
            end
        end
        local out = {}
        for i, p in ipairs(pending) do
            local r = p.result
            r.line = p.line
            if r.ok then
                ok_count = ok_count + 1
            else
                failed = failed + 1
            end
            out[i] = json.encode(r) .. "\n"
        end
        write(table.concat(out))
        done = done + #pending
        bar:update(done, total)
        pending = {}
    end

    for line_no, rec, problem in records.read(input:lines(), format) do
        if only == nil or only[line_no] then
            local entry = { line = line_no }
            local call, req, request
            if rec then
                call, req = records.call(ctx.app_id, rec)
                problem = not call and req or nil
            end
            if not problem and args.dry_run then
                request, problem = calls.check(ctx.client, call)
            end
            if problem then
                entry.result = calls.input_error(problem)
            elseif args.dry_run then
                entry.result = { ok = true, dry_run = true, operation = call[1],
                    id = type(call[3]) == "string" and call[3] or nil,
                    method = request.method, url = request.url, request = req }
            else
                entry.call = call
            end
            pending[#pending + 1] = entry
            if #pending >= CHUNK then
                flush()
            end
        end
    end
    flush()
    bar:finish()
    if input ~= io.stdin then
        input:close()
    end
    if results_file then
        results_file:close()
    end
    if args.dry_run then
        output.say("dry run: %d records valid, %d not; nothing sent", ok_count, failed)
    else
        output.say("%s: %d records, %d ok, %d failed", args.command, done, ok_count, failed)
    end
    return failed > 0 and 1 or 0
end

return import
