--- Records of an import file (JSON Lines or CSV) and the calls they stand for.
--
-- A record has the fields `id`, `email`, `phone`, `user_metadata`, and
-- optionally `op` and `device_id`. Without `op`, a record with an `id`
-- updates that user and one without creates a user. In CSV the first line
-- names the columns, an empty cell is an absent field and `user_metadata`
-- is a JSON object. The read-only fields of an exported user (`status`,
-- `created_at`, ...) and fields no user has are ignored, so an export can
-- be read back (`unknown_fields` names the latter, to report them).
-- @module passage.cli.records
local schema = require "passage.schema"
local command_list = require "passage.cli.command_list"
local csv = require "passage.cli.csv"
local input = require "passage.cli.input"
local json = require "passage.cli.json"
local text = require "passage.cli.text"

local records = {}

-- Operation names of a record, and the library operation each runs: the
-- names of the commands that change users (passage.cli.command_list), and
-- the library's own names.
local OPERATION_OF_RECORD = {}
for _, entry in ipairs(command_list) do
    if entry.module == "change" or entry.name == "create" or entry.name == "update" then
        OPERATION_OF_RECORD[entry.name] = entry.operation
        OPERATION_OF_RECORD[entry.operation] = entry.operation
    end
end

-- The fields a request sets (passage.schema), and those that pick the call.
local WRITABLE = schema.USER_REQUEST
local KEYS = { op = true, id = true, device_id = true }
local OTHER = {}
for _, name in ipairs(schema.USER_OTHER) do
    OTHER[name] = true
end

--- Whether a field is one of a user's, as the API returns users
-- (`passage.schema`): read-only fields of an export are not reported as
-- unknown when they are ignored.
-- @tparam string name
-- @treturn bool
function records.is_user_field(name)
    return schema.USER[name] ~= nil or WRITABLE[name] ~= nil or KEYS[name] ~= nil
        or OTHER[name] ~= nil
end

--- What makes a line of input unreadable: too long (the reader's marker)
-- or not UTF-8. Nil for a good line.
-- @param line a string, or the `too_long` marker of `passage.cli.input`
-- @treturn ?string
function records.line_problem(line)
    if type(line) == "table" then
        return line.message
    end
    local bad = text.bad_byte(line)
    if bad then
        return string.format("not UTF-8 (byte %d)", bad)
    end
end

--- The input format a file name suggests.
-- @tparam string path
-- @treturn string "csv" or "jsonl"
function records.format_of(path)
    return path:lower():match("%.csv$") and "csv" or "jsonl"
end

--- A short fingerprint of a record's text: what `--rerun` compares to be
-- sure a results file belongs to this input (the same line numbers of
-- another file would otherwise run other records). Eight hex digits; the
-- same on every Lua (no bit operations).
-- @tparam string line the record's text
-- @treturn string
function records.fingerprint(line)
    local h = 5381
    for at = 1, #line, 4096 do
        local bytes = { line:byte(at, at + 4095) }
        for i = 1, #bytes do
            h = (h * 33 + bytes[i]) % 4294967296
        end
    end
    return string.format("%08x", h)
end

local function json_records(next_line)
    local line_no = 0
    return function()
        while true do
            local line = next_line()
            if line == nil then
                return nil
            end
            line_no = line_no + 1
            local problem = records.line_problem(line)
            if problem then
                return line_no, nil, problem
            end
            if line:find("%S") then
                local v, err = json.decode(line)
                if type(v) ~= "table" then
                    return line_no, nil, err and ("not JSON: " .. err) or "not a JSON object"
                end
                return line_no, v, nil, records.fingerprint(line)
            end
        end
    end
end

-- Header names as a spreadsheet may write them: a UTF-8 byte order mark
-- before the first, any case, spaces around.
local BOM = "\239\187\191"

local function header_names(fields)
    if fields[1] and fields[1]:sub(1, 3) == BOM then
        fields[1] = fields[1]:sub(4)
    end
    for i, name in ipairs(fields) do
        fields[i] = name:match("^%s*(.-)%s*$"):lower()
    end
    return fields
end

local function csv_records(next_line, raw)
    local read = csv.records(next_line, input.MAX_LINE_BYTES)
    local header_line, header = read()
    if header then
        header = header_names(header)
    end
    if header_line and not header then
        return function()
            local n = header_line
            header_line = nil
            if n then
                return n, nil, "header line: not CSV"
            end
        end
    end
    return function()
        while true do
            local line_no, fields, err = read()
            if line_no == nil or err then
                return line_no, nil, err
            end
            for _, field in ipairs(fields) do
                local problem = records.line_problem(field)
                if problem then
                    return line_no, nil, problem
                end
            end
            if #fields > 1 or fields[1] ~= "" then
                if #fields ~= #header then
                    return line_no, nil, string.format("%d fields, the header has %d",
                        #fields, #header)
                end
                local rec = {}
                for i, column in ipairs(header) do
                    if fields[i] ~= "" then
                        rec[column] = raw and fields[i] or csv.restored(fields[i])
                    end
                end
                if rec.user_metadata then
                    local md, merr = json.decode(rec.user_metadata)
                    if type(md) ~= "table" then
                        return line_no, nil, "user_metadata: not a JSON object"
                            .. (merr and ": " .. merr or "")
                    end
                    rec.user_metadata = md
                end
                return line_no, rec, nil, records.fingerprint(table.concat(fields, "\0"))
            end
        end
    end
end

--- Reads records.
-- @tparam function next_line a source of lines (as `file:lines()`)
-- @tparam string format "jsonl" or "csv"
-- @tparam[opt] bool raw CSV cells as they are (no undoing of the `'` an
--   export puts before a formula-like value)
-- @treturn function an iterator for a generic `for`: the line number of a
--   record, the record (a table), nil and its `fingerprint`; or the line
--   number, nil and a message
function records.read(next_line, format, raw)
    if format == "csv" then
        return csv_records(next_line, raw)
    end
    return json_records(next_line)
end

--- The request fields of a record: its writable fields (a null is
-- absent); every other field is ignored.
-- @tparam table rec
-- @treturn table the request
-- @treturn int how many fields it has
function records.request(rec)
    local req, n = {}, 0
    for k, v in pairs(rec) do
        if WRITABLE[k] and v ~= json.null then
            req[k], n = v, n + 1
        end
    end
    return req, n
end

--- The fields of a record that are not a user's (each ignored).
-- @tparam table rec
-- @treturn {string,...} their names, sorted
function records.unknown_fields(rec)
    local names = {}
    for k in pairs(rec) do
        if type(k) ~= "string" or not records.is_user_field(k) then
            names[#names + 1] = tostring(k)
        end
    end
    table.sort(names)
    return names
end

--- The call a record stands for. Only the record's own rules are checked
-- here (known fields, which operation); what the library checks of the
-- call's arguments it checks itself (`client:check`), with its messages.
-- @tparam string app_id
-- @tparam table rec a record of `read`
-- @return a call for `client:bulk` (`{ operation, app_id, ... }`) and the
--   request part of it for a dry run; or nil and a message
function records.call(app_id, rec)
    local req, n = records.request(rec)
    local id = rec.id ~= json.null and rec.id or nil
    local op = rec.op and OPERATION_OF_RECORD[rec.op]
    if rec.op and not op then
        return nil, "op: unknown operation " .. tostring(rec.op)
    end
    op = op or (id and "update_user" or "create_user")
    if op == "create_user" then
        if id then
            return nil, "id: a create cannot choose the id"
        end
        return { op, app_id, req }, req
    elseif op == "update_user" then
        return { op, app_id, id, req }, req
    elseif n > 0 then
        return nil, op .. " takes no email, phone or user_metadata"
    elseif op == "delete_user_device" then
        local device = rec.device_id ~= json.null and rec.device_id or nil
        return { op, app_id, id, device }, { device_id = device }
    end
    return { op, app_id, id }, nil
end

return records
