--- Users written as a table, JSON, JSON Lines or CSV.
-- @module passage.cli.users_format
local schema = require "passage.schema"
local csv = require "passage.cli.csv"
local json = require "passage.cli.json"
local output = require "passage.cli.output"

local users_format = {}

--- The CSV columns, in order (`passage.schema`'s); `user_metadata` is a
-- JSON object text.
users_format.CSV_COLUMNS = schema.USER_COLUMNS
local NCOLUMNS = #users_format.CSV_COLUMNS

--- The CSV header line.
-- @treturn string
function users_format.csv_header()
    return csv.line(users_format.CSV_COLUMNS, NCOLUMNS)
end

--- One user as a CSV line; cells that a spreadsheet would run as formulas
-- are neutralised (`passage.cli.csv.neutralised`) unless `raw`.
-- @tparam table user
-- @tparam[opt] bool raw write every value as it is
-- @treturn string
function users_format.csv_line(user, raw)
    local row = {}
    for i, column in ipairs(users_format.CSV_COLUMNS) do
        local v = user[column]
        if type(v) == "table" then
            v = json.encode(v)
        elseif type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
            v = nil
        end
        if type(v) == "string" and not raw then
            v = csv.neutralised(v)
        end
        row[i] = v
    end
    return csv.line(row, NCOLUMNS)
end

--- One user as a JSON line.
-- @tparam table user
-- @treturn string
function users_format.json_line(user)
    return json.encode(user) .. "\n"
end

-- The zero time the API gives users who never logged in.
local NEVER = "0001-01-01T00:00:00Z"

local function when(t)
    if type(t) ~= "string" or t == "" then
        return ""
    end
    if t == NEVER then
        return "never"
    end
    return (t:gsub("%.%d+Z$", "Z"):gsub("T", " "))
end

local TABLE_COLUMNS = {
    { "ID", function(u) return u.id end },
    { "EMAIL", function(u) return u.email end },
    { "PHONE", function(u) return u.phone end },
    { "STATUS", function(u) return u.status end },
    { "LOGINS", function(u) return u.login_count end },
    { "CREATED", function(u) return when(u.created_at) end },
    { "LAST LOGIN", function(u) return when(u.last_login_at) end },
}

--- Users as a table with aligned columns, a header and a line per user.
-- @tparam {table,...} list the users
-- @treturn string
function users_format.table(list)
    local rows, widths = {}, {}
    for c, column in ipairs(TABLE_COLUMNS) do
        widths[c] = #column[1]
    end
    for r, user in ipairs(list) do
        local row = {}
        for c, column in ipairs(TABLE_COLUMNS) do
            local v = column[2](user)
            row[c] = v == nil and "" or output.printable(tostring(v))
            widths[c] = math.max(widths[c], #row[c])
        end
        rows[r] = row
    end
    local out = {}
    local function add(row)
        local cells = {}
        for c = 1, #TABLE_COLUMNS do
            cells[c] = row[c] .. (" "):rep(widths[c] - #row[c])
        end
        out[#out + 1] = (table.concat(cells, "  "):gsub("%s+$", "")) .. "\n"
    end
    local header = {}
    for c, column in ipairs(TABLE_COLUMNS) do
        header[c] = column[1]
    end
    add(header)
    for _, row in ipairs(rows) do
        add(row)
    end
    return table.concat(out)
end

return users_format
