--- Records of an import file (JSON Lines or CSV) and the calls they stand for.
--
-- A record has the fields `id`, `email`, `phone`, `user_metadata`, and
-- optionally `op` and `device_id`. Without `op`, a record with an `id`
-- updates that user and one without creates a user. In CSV the first line
-- names the columns, an empty cell is an absent field and `user_metadata`
-- is a JSON object. The read-only fields of an exported user (`status`,
-- `created_at`, ...) are ignored, so an export can be read back.
-- @module passage.cli.records
local csv = require "passage.cli.csv"
local json = require "passage.cli.json"

local records = {}

-- Operation names of a record, and the library operation each runs.
local OPERATIONS = {
    create = "create_user", update = "update_user", delete = "delete_user",
    activate = "activate_user", deactivate = "deactivate_user",
    ["revoke-tokens"] = "revoke_user_refresh_tokens",
    ["delete-device"] = "delete_user_device",
}
for _, name in pairs(OPERATIONS) do
    OPERATIONS[name] = name
end

local WRITABLE = { email = "string", phone = "string", user_metadata = "table" }
local KEYS = { op = "string", id = "string", device_id = "string" }

-- Fields of a user as the API returns it that no request can set.
local READ_ONLY = {
    status = true, email_verified = true, phone_verified = true, login_count = true,
    created_at = true, updated_at = true, last_login_at = true, external_id = true,
    recent_events = true, social_connections = true, webauthn = true,
    webauthn_devices = true, webauthn_types = true,
}

--- The input format a file name suggests.
-- @tparam string path
-- @treturn string "csv" or "jsonl"
function records.format_of(path)
    return path:lower():match("%.csv$") and "csv" or "jsonl"
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
            if line:find("%S") then
                local v, err = json.decode(line)
                if type(v) ~= "table" then
                    return line_no, nil, err and ("not JSON: " .. err) or "not a JSON object"
                end
                return line_no, v
            end
        end
    end
end

local function csv_records(next_line)
    local read = csv.records(next_line)
    local header_line, header = read()
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
            if #fields > 1 or fields[1] ~= "" then
                if #fields ~= #header then
                    return line_no, nil, string.format("%d fields, the header has %d",
                        #fields, #header)
                end
                local rec = {}
                for i, column in ipairs(header) do
                    if fields[i] ~= "" then
                        rec[column] = fields[i]
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
                return line_no, rec
            end
        end
    end
end

--- Reads records.
-- @tparam function next_line a source of lines (as `file:lines()`)
-- @tparam string format "jsonl" or "csv"
-- @treturn function an iterator for a generic `for`: the line number of a
--   record and the record (a table), or the line number, nil and a message
function records.read(next_line, format)
    if format == "csv" then
        return csv_records(next_line)
    end
    return json_records(next_line)
end

local function check_metadata(md)
    if type(md) ~= "table" or getmetatable(md) then
        return "user_metadata: expected an object"
    end
    for k, v in pairs(md) do
        local t = type(v)
        if type(k) ~= "string" then
            return "user_metadata: keys must be strings"
        elseif t == "number" then
            if v ~= v or v == math.huge or v == -math.huge then
                return "user_metadata." .. k .. ": not a finite number"
            end
        elseif t ~= "string" and t ~= "boolean" then
            return "user_metadata." .. k .. ": expected a string, number or boolean"
        end
    end
end

--- The call a record stands for.
-- @tparam string app_id
-- @tparam table rec a record of `read`
-- @return a call for `client:bulk` (`{ operation, app_id, ... }`) and the
--   request part of it for a dry run; or nil and a message
function records.call(app_id, rec)
    local req, n = {}, 0
    for k, v in pairs(rec) do
        if v == json.null then
            v = nil
        end
        if type(k) ~= "string" or not (WRITABLE[k] or KEYS[k] or READ_ONLY[k]) then
            return nil, "unknown field " .. tostring(k)
        end
        local want = WRITABLE[k] or KEYS[k]
        if want and v ~= nil and type(v) ~= want then
            return nil, string.format("%s: expected a %s", k, want == "table" and "object" or want)
        end
        if WRITABLE[k] and v ~= nil then
            req[k], n = v, n + 1
        end
    end
    if req.user_metadata then
        local problem = check_metadata(req.user_metadata)
        if problem then
            return nil, problem
        end
    end
    local id = rec.id ~= json.null and rec.id or nil
    local op = rec.op and OPERATIONS[rec.op]
    if rec.op and not op then
        return nil, "op: unknown operation " .. tostring(rec.op)
    end
    op = op or (id and "update_user" or "create_user")
    if op ~= "create_user" and (id == nil or not id:find("%S")) then
        return nil, "id: required for " .. op
    end
    if op == "create_user" then
        if id then
            return nil, "id: a create cannot choose the id"
        end
        if (req.email or "") == "" and (req.phone or "") == "" then
            return nil, "an email or a phone is required"
        end
        return { op, app_id, req }, req
    elseif op == "update_user" then
        if n == 0 then
            return nil, "nothing to update"
        end
        return { op, app_id, id, req }, req
    elseif n > 0 then
        return nil, op .. " takes no email, phone or user_metadata"
    elseif op == "delete_user_device" then
        local device = rec.device_id
        if device == nil or device == json.null or not device:find("%S") then
            return nil, "device_id: required for delete_user_device"
        end
        return { op, app_id, id, device }, { device_id = device }
    end
    return { op, app_id, id }, nil
end

return records
