--- CSV as RFC 4180 writes it: comma-separated, a field with a comma, a
-- quote or a line break in double quotes, quotes doubled.
-- @module passage.cli.csv
local csv = {}

local function field_text(v)
    v = v == nil and "" or tostring(v)
    if v:find('[,"\r\n]') then
        return '"' .. v:gsub('"', '""') .. '"'
    end
    return v
end

-- A cell a spreadsheet would run as a formula starts with one of these,
-- maybe after quotes added before (so that adding one can be undone).
local FORMULA_START = "^'*[=+%-@\t\r]"

-- Values that start so but are data to a spreadsheet too: plain numbers
-- and E.164 phone numbers.
local function plain_data(v)
    return v:find("^[-+]?%d+%.?%d*$") ~= nil or v:find("^[-+]?%d*%.%d+$") ~= nil
        or v:find("^%+[1-9]%d%d%d%d%d%d+$") ~= nil
end

--- A cell made safe for a spreadsheet: a value that would start a formula
-- (`=`, `+`, `-`, `@`, TAB, CR) gets a leading `'`, except plain numbers
-- and E.164 phones. `restored` undoes it exactly.
-- @tparam string v
-- @treturn string
function csv.neutralised(v)
    if v:find(FORMULA_START) and not plain_data(v) then
        return "'" .. v
    end
    return v
end

--- A cell as it was before `neutralised`.
-- @tparam string v
-- @treturn string
function csv.restored(v)
    if v:find("^'+[=+%-@\t\r]") and not plain_data(v:sub(2)) then
        return v:sub(2)
    end
    return v
end

--- One record as a line (with its line break, CRLF as RFC 4180 has it).
-- @tparam table fields values (strings, numbers, booleans; nil is empty),
--   `n` of them
-- @tparam number n how many fields
-- @treturn string
function csv.line(fields, n)
    local out = {}
    for i = 1, n do
        out[i] = field_text(fields[i])
    end
    return table.concat(out, ",") .. "\r\n"
end

--- Reads records from a source of lines.
-- @tparam function next_line returns the next line without its line break,
--   or nil at the end (as `file:lines()`)
-- @tparam[opt] int max_record_bytes the longest record that spans lines
-- @treturn function an iterator for a generic `for`: the number of the
--   line a record starts on and its fields (an array of strings), or that
--   number, nil and a message for a malformed record; nil at the end
function csv.records(next_line, max_record_bytes)
    max_record_bytes = max_record_bytes or math.huge
    local line_no = 0
    return function()
        local line = next_line()
        if line == nil then
            return nil
        end
        line_no = line_no + 1
        local start = line_no
        if type(line) == "table" then
            return start, nil, line.message -- a line over the reader's cap
        end
        line = line:gsub("\r$", "")
        local fields, pos, held = {}, 1, 0
        while true do
            if line:sub(pos, pos) == '"' then
                local parts = {}
                pos = pos + 1
                while true do
                    local q = line:find('"', pos, true)
                    if q then
                        parts[#parts + 1] = line:sub(pos, q - 1)
                        if line:sub(q + 1, q + 1) == '"' then
                            parts[#parts + 1] = '"'
                            pos = q + 2
                        else
                            pos = q + 1
                            break
                        end
                    else
                        -- The quoted field goes on on the next line.
                        parts[#parts + 1] = line:sub(pos) .. "\n"
                        held = held + #parts[#parts]
                        if held > max_record_bytes then
                            -- An unclosed quote must not hold the rest of
                            -- the file: the record is refused, reading goes on.
                            return start, nil, string.format(
                                "a quoted field longer than %d bytes (a quote not closed?)",
                                max_record_bytes)
                        end
                        line = next_line()
                        if line == nil then
                            return start, nil, "a quoted field is not closed"
                        elseif type(line) == "table" then
                            return start, nil, line.message
                        end
                        line_no = line_no + 1
                        line = line:gsub("\r$", "")
                        pos = 1
                    end
                end
                fields[#fields + 1] = table.concat(parts)
                local c = line:sub(pos, pos)
                if c == "," then
                    pos = pos + 1
                elseif c == "" then
                    return start, fields
                else
                    return start, nil, "text after a closing quote"
                end
            else
                local comma = line:find(",", pos, true)
                local text = line:sub(pos, (comma or 0) - 1)
                if text:find('"', 1, true) then
                    return start, nil, "a quote inside an unquoted field"
                end
                fields[#fields + 1] = text
                if not comma then
                    return start, fields
                end
                pos = comma + 1
            end
        end
    end
end

return csv
