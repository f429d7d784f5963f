-- The query of list_paginated_users, from Lua values to the wire form.
--
-- Shared by client:list_paginated_users and passage.paginator, so the two can
-- never disagree. Everything is checked before a request is made:
--   page, limit, created_before      whole numbers (limit 1..500)
--   order_by                         "created_at:DESC,id:ASC", or a list:
--                                    { {"created_at", "DESC"}, "id:ASC" }
--   identifier, id, status,          a plain value means equality; a table
--   login_count, created_at,         with one operator means that operator:
--   updated_at, last_login_at        { gt = 3 }, { like = "%@example.com" }
-- Timestamps may be Unix seconds (numbers) or strings in the API's layout
-- 2006-01-02T15:04:05.000000Z. Operators per field follow the spec: the
-- counters and timestamps take ne/gt/lt only.
--
-- The doc comments below are the reference of the list params;
-- spec/docs_spec.lua checks they name every field of FIELDS and every
-- operator.

--- The list params: the paging, order and filters of
-- @{passage.users.Client:list_paginated_users|list_paginated_users} and
-- `passage.paginator`, as Lua values.
--
-- Every param is checked before a request is made (an unknown name, a
-- wrong type, an operator a field does not take raise) and sent in the
-- API's form. Scripts do not require this module.
-- @module passage.filters
-- @usage
-- client:list_paginated_users(app_id, {
--     status = "active",                        -- equality
--     login_count = { gt = 5 },                 -- an operator
--     identifier = { like = "%@old.example" },
--     created_at = { lt = os.time() - 86400 },  -- Unix seconds
--     order_by = "created_at:DESC,id:ASC",
--     limit = 100,
-- })
local errors = require "passage.errors"

local filters = {}

--- The list params, all optional. A filter's value is a plain value
-- (equality) or a table with exactly one of the `operators`
-- (`{ gt = 3 }`). Text values are non-empty strings of at most 1024
-- bytes. Timestamps are Unix seconds (a number; fractions are kept to the
-- microsecond) or a string in the API's layout
-- `"2006-01-02T15:04:05.000000Z"` (UTC, six fractional digits).
-- @table params
-- @tfield int page the page, from 1 (`passage.paginator` sets it itself)
-- @tfield int limit users per page, 1 to 500
-- @tfield int created_before Unix seconds: lists only users created before
-- (a page returns the window it used, to send back for the next)
-- @tfield string|table order_by `"field:ASC|DESC"` items joined by commas
-- (`"created_at:DESC,id:ASC"`; the direction defaults to ASC), or a list of
-- such strings or `{ field, direction }` pairs. The fields: `id`,
-- `email`, `phone`, `status`, `login_count`, `created_at`, `updated_at`,
-- `last_login_at` (not `identifier`). The API's default is `created_at`.
-- @field identifier a text: matches the email or the phone. Every
-- operator.
-- @field id a text: the user's id. Every operator.
-- @field status `"active"`, `"inactive"` or `"pending"` (`like` and
-- `not_like` take any pattern). Every operator.
-- @field login_count a whole number >= 0. `ne`, `gt`, `lt`.
-- @field created_at a timestamp. `ne`, `gt`, `lt`.
-- @field updated_at a timestamp. `ne`, `gt`, `lt`.
-- @field last_login_at a timestamp. `ne`, `gt`, `lt`.

--- The operators of a filter: `{ [operator] = value }`. A plain string
-- that starts like one (`"ne:x"`) raises rather than be read as it: write
-- `{ ne = "x" }`.
-- @table operators
-- @field ne not equal to the value
-- @field gt greater than the value
-- @field lt less than the value
-- @field like matches the pattern: `%` stands for any run of characters,
-- `_` for one (`{ like = "%@example.com" }`)
-- @field not_like does not match the pattern

local ALL_OPS = { ne = true, gt = true, lt = true, like = true, not_like = true }
local COMPARE_OPS = { ne = true, gt = true, lt = true }

local STATUSES = { active = true, inactive = true, pending = true }

-- Field -> the operators it takes and how its values are checked.
filters.FIELDS = {
    identifier = { ops = ALL_OPS, kind = "text" },
    id = { ops = ALL_OPS, kind = "text" },
    status = { ops = ALL_OPS, kind = "status" },
    login_count = { ops = COMPARE_OPS, kind = "count" },
    created_at = { ops = COMPARE_OPS, kind = "time" },
    updated_at = { ops = COMPARE_OPS, kind = "time" },
    last_login_at = { ops = COMPARE_OPS, kind = "time" },
}

-- Fields the API can order by: every filter field but identifier, plus the
-- two that identifier stands for.
filters.ORDERABLE = {
    id = true, email = true, phone = true, status = true, login_count = true,
    created_at = true, updated_at = true, last_login_at = true,
}

filters.MAX_LIMIT = 500

-- The longest id or filter value sent. Real ones are far shorter; a value
-- past this is a mistake, and a few MiB of it would reach libcurl's own
-- limits (or a server's) as a confusing fault instead of a clear raise.
filters.MAX_TEXT_BYTES = 1024

local FILTER_ORDER = {
    "identifier", "id", "status", "login_count", "created_at", "updated_at", "last_login_at",
}

local function is_whole(v)
    return type(v) == "number" and v == v and v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53
end
filters.is_whole = is_whole

local fail = errors.argument

local function whole_string(v)
    return string.format("%d", v)
end

-- Unix seconds -> "2006-01-02T15:04:05.000000Z" (UTC, microseconds).
function filters.format_time(t)
    local sec = math.floor(t)
    local us = math.floor((t - sec) * 1e6 + 0.5)
    if us >= 1000000 then
        sec, us = sec + 1, us - 1000000
    end
    return os.date("!%Y-%m-%dT%H:%M:%S", sec) .. string.format(".%06dZ", us)
end

local TIME_PATTERN = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$"

-- One value of a field to its wire text (without the operator prefix).
local function value_text(field, spec, op, v)
    local kind = spec.kind
    if kind == "count" then
        if not is_whole(v) or v < 0 then
            fail("filter %s: expected a whole number >= 0, got %s", field, tostring(v))
        end
        return whole_string(v)
    elseif kind == "time" then
        if type(v) == "number" then
            if v ~= v or v < 0 or v >= 253402300800 then
                fail("filter %s: Unix time out of range: %s", field, tostring(v))
            end
            return filters.format_time(v)
        elseif type(v) == "string" and v:match(TIME_PATTERN) then
            return v
        end
        fail("filter %s: expected Unix seconds or a 2006-01-02T15:04:05.000000Z string, got %s",
            field, tostring(v))
    end
    if type(v) ~= "string" or v == "" then
        fail("filter %s: expected a non-empty string, got %s", field, tostring(v))
    end
    if #v > filters.MAX_TEXT_BYTES then
        fail("filter %s: longer than %d bytes", field, filters.MAX_TEXT_BYTES)
    end
    if kind == "status" and op ~= "like" and op ~= "not_like" and not STATUSES[v] then
        fail("filter status: %q is not one of active, inactive, pending", v)
    end
    return v
end

local function filter_text(field, value)
    local spec = filters.FIELDS[field]
    if type(value) ~= "table" then
        local text = value_text(field, spec, nil, value)
        -- A plain value that starts like "ne:" would be read as an operator.
        local prefix = type(value) == "string" and value:match("^([%a_]+):")
        if prefix and ALL_OPS[prefix] then
            fail("filter %s: plain value %q reads as an operator; write { %s = ... }",
                field, value, prefix)
        end
        return text
    end
    local op, v = next(value)
    if op == nil or next(value, op) ~= nil then
        fail("filter %s: give exactly one operator, as in { gt = ... }", field)
    end
    if type(op) ~= "string" or not spec.ops[op] then
        local names = {}
        for name in pairs(spec.ops) do
            names[#names + 1] = name
        end
        table.sort(names)
        fail("filter %s: operator %s not allowed (use %s)", field, tostring(op),
            table.concat(names, ", "))
    end
    return op .. ":" .. value_text(field, spec, op, v)
end

local function order_item_text(item)
    local field, dir
    if type(item) == "string" then
        field, dir = item:match("^([%w_]+):(%a+)$")
        if not field then
            field, dir = item:match("^([%w_]+)$"), "ASC"
        end
    elseif type(item) == "table" then
        field, dir = item[1], item[2] or "ASC"
    end
    if type(field) ~= "string" or type(dir) ~= "string" then
        fail("order_by: expected \"field:ASC|DESC\" or { field, \"ASC\"|\"DESC\" }, got %s",
            tostring(item))
    end
    dir = dir:upper()
    if dir ~= "ASC" and dir ~= "DESC" then
        fail("order_by: direction %q is not ASC or DESC", dir)
    end
    if field == "identifier" then
        fail("order_by: the API cannot order by identifier")
    end
    if not filters.ORDERABLE[field] then
        fail("order_by: unknown field %q", field)
    end
    return field .. ":" .. dir
end

function filters.order_by_text(order)
    local items = {}
    if type(order) == "string" then
        for item in (order .. ","):gmatch("([^,]*),") do
            items[#items + 1] = order_item_text(item)
        end
    elseif type(order) == "table" then
        if order[1] == nil then
            fail("order_by: empty list")
        end
        for i = 1, #order do
            items[i] = order_item_text(order[i])
        end
    else
        fail("order_by: expected a string or a list, got %s", type(order))
    end
    return table.concat(items, ",")
end

local function whole_param(params, name, min, max)
    local v = params[name]
    if v == nil then
        return nil
    end
    if not is_whole(v) or v < min or (max and v > max) then
        fail("%s: expected a whole number in %d..%s, got %s", name, min,
            max and tostring(max) or "", tostring(v))
    end
    return whole_string(v)
end

local PAGING = { page = true, limit = true, created_before = true, order_by = true }

-- Checks `params` and returns the query as an array of { name, text } in a
-- fixed order (page, limit, created_before, order_by, then filters). Throws
-- an argument error (passage.errors) on anything invalid.
function filters.to_query(params)
    local q = {}
    if params == nil then
        return q
    end
    if type(params) ~= "table" then
        fail("list params: expected a table, got %s", type(params))
    end
    for name in pairs(params) do
        if not PAGING[name] and not filters.FIELDS[name] then
            fail("list params: unknown parameter %s", tostring(name))
        end
    end
    local page = whole_param(params, "page", 1, nil)
    local limit = whole_param(params, "limit", 1, filters.MAX_LIMIT)
    local created_before = whole_param(params, "created_before", 0, nil)
    if page then q[#q + 1] = { "page", page } end
    if limit then q[#q + 1] = { "limit", limit } end
    if created_before then q[#q + 1] = { "created_before", created_before } end
    if params.order_by ~= nil then
        q[#q + 1] = { "order_by", filters.order_by_text(params.order_by) }
    end
    for _, field in ipairs(FILTER_ORDER) do
        local v = params[field]
        if v ~= nil then
            q[#q + 1] = { field, filter_text(field, v) }
        end
    end
    return q
end

return filters
