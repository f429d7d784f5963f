--- Filters as typed on the command line, turned into the library's filter
-- values (see `passage.filters`).
--
-- A filter value is `[op:]value`: `active`, `gt:5`, `like:%@example.com`,
-- `lt:2024-01-01`. The operators are those of the API (`ne`, `gt`, `lt`,
-- `like`, `not_like`) plus `eq:`, which means a plain value (for a value
-- that itself starts with an operator's name and a colon). The library
-- checks which operator a field takes; this module only reads the text.
--
-- Counters become numbers; timestamps may be written `2024-01-01`,
-- `2024-01-01T10:00:00Z` or with up to six fractional digits, and are sent
-- in the API's layout `2024-01-01T10:00:00.000000Z`; digits alone are Unix
-- seconds.
-- @module passage.cli.where
local filters = require "passage.filters"

local where = {}

--- The fields a filter can name (`passage.filters.FIELDS`), sorted.
where.FIELDS = {}
for field in pairs(filters.FIELDS) do
    where.FIELDS[#where.FIELDS + 1] = field
end
table.sort(where.FIELDS)

-- The kind of each field's values ("count", "time", ...), as the library
-- checks them.
local function kind_of(field)
    return filters.FIELDS[field].kind
end

-- Every operator some field takes, and eq: (a plain value).
local OPERATORS = { eq = true }
for _, spec in pairs(filters.FIELDS) do
    for op in pairs(spec.ops) do
        OPERATORS[op] = true
    end
end

local function time_value(text)
    if text:match("^%d+$") then
        return tonumber(text)
    end
    local date, rest = text:match("^(%d%d%d%d%-%d%d%-%d%d)(.*)$")
    if not date then
        return text
    end
    if rest == "" then
        return date .. "T00:00:00.000000Z"
    end
    local hms, fraction = rest:match("^[T ](%d%d:%d%d:%d%d)%.?(%d*)Z$")
    if not hms then
        hms = rest:match("^[T ](%d%d:%d%d)Z?$")
        hms = hms and hms .. ":00"
        fraction = ""
    end
    if not hms or #fraction > 6 then
        return text -- the library names what is wrong with it
    end
    return date .. "T" .. hms .. "." .. fraction .. ("0"):rep(6 - #fraction) .. "Z"
end

--- The library's value for one field from its text.
-- @tparam string field one of `FIELDS`
-- @tparam string text `[op:]value`
-- @return a plain value or `{ [op] = value }`
function where.value(field, text)
    local op, rest = text:match("^([%a_]+):(.*)$")
    if not (op and OPERATORS[op]) then
        op, rest = nil, text
    end
    local value = rest
    if kind_of(field) == "count" then
        value = rest:match("^%d+$") and tonumber(rest) or rest
    elseif kind_of(field) == "time" then
        value = time_value(rest)
    end
    if op == nil or op == "eq" then
        return value
    end
    return { [op] = value }
end

--- Adds the filters of `--where field=[op:]value` texts to `params`.
-- @tparam table params list parameters to fill
-- @tparam {string,...} texts the `--where` values
-- @return `params`, or nil and a message
function where.add(params, texts)
    for _, text in ipairs(texts or {}) do
        local field, value = text:match("^([%w_%-]+)=(.*)$")
        if not field then
            return nil, string.format("--where %q: expected field=[op:]value", text)
        end
        field = field:gsub("%-", "_")
        if not filters.FIELDS[field] then
            return nil, string.format("--where %q: unknown field %s (one of %s)", text, field,
                table.concat(where.FIELDS, ", "))
        end
        if params[field] ~= nil then
            return nil, string.format("filter %s given twice (the API takes one per field)", field)
        end
        params[field] = where.value(field, value)
    end
    return params
end

--- The list params of parsed arguments: `--order-by`, the field options (`--status`,
-- `--login-count`, ...) and every `--where`.
-- @tparam table args the parsed command line
-- @return list parameters, or nil and a message
function where.from_args(args)
    local params = { order_by = args.order_by }
    for _, field in ipairs(where.FIELDS) do
        if args[field] ~= nil then
            params[field] = where.value(field, args[field])
        end
    end
    return where.add(params, args.where)
end

return where
