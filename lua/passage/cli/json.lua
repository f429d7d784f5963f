--- JSON text for the command's output and JSON input lines.
--
-- Users are written as the API sends them: arrays (tables with
-- `users.array_mt`) stay arrays even when empty, `users.null` is `null`,
-- and object keys come in a readable, stable order (`line`, `ok`, `id`,
-- `email`, ... first, the rest sorted). Decoding uses a private lua-cjson
-- instance, never the global one.
-- @module passage.cli.json
local users = require "passage.users"
local cjson = require("cjson").new()
local text = require "passage.cli.text"

local signals = require "passage.cli.signals"

local json = {}

local FIRST = {
    "line", "ok", "dry_run", "operation", "id", "device_id", "user_status", "email", "phone",
    "kind", "status", "code", "message", "request",
}
local RANK = {}
for i, key in ipairs(FIRST) do
    RANK[key] = i
end

local function key_before(a, b)
    local ra, rb = RANK[a], RANK[b]
    if ra or rb then
        return (ra or math.huge) < (rb or math.huge)
    end
    return a < b
end

-- A string with every byte that is not part of valid UTF-8 replaced by
-- U+FFFD, so that every line written is valid UTF-8 JSON whatever a server
-- or an input file held.
local function valid_utf8(v)
    return text.fix_utf8(v, function()
        return "\239\191\189"
    end)
end

-- Most strings need no escape and are quoted as they are (UTF-8 passes
-- through, as lua-cjson passes it).
-- C1 controls and bidi overrides are written as \u escapes too (the same
-- string to a JSON reader), so JSON shown on a terminal cannot act on it.
local TERMINAL_ACTIVE = { "\194[\128-\159]", "\226\128[\170-\174]", "\226\129[\166-\169]" }

local function unicode_escape(c)
    return string.format("\\u%04x", text.code_point(c))
end

local function string_text(v)
    v = valid_utf8(v)
    local quoted
    if v:find('[%c"\\]') then
        quoted = cjson.encode(v)
    else
        quoted = '"' .. v .. '"'
    end
    if quoted:find("\194", 1, true) or quoted:find("\226", 1, true) then
        for _, pattern in ipairs(TERMINAL_ACTIVE) do
            quoted = quoted:gsub(pattern, unicode_escape)
        end
    end
    return quoted
end

local function is_integer(v)
    if math.type then
        return math.type(v) == "integer"
    end
    return v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53
end

local function number_text(v)
    if v ~= v or v == math.huge or v == -math.huge then
        return "null"
    end
    if is_integer(v) then
        return string.format("%d", v)
    end
    local s = string.format("%.14g", v)
    if tonumber(s) ~= v then
        s = string.format("%.17g", v)
    end
    return s
end

local function is_array(t)
    if getmetatable(t) == users.array_mt then
        return true
    end
    if getmetatable(t) ~= nil or t[1] == nil then
        return false
    end
    local n = 0
    for _ in pairs(t) do
        n = n + 1
    end
    return n == #t
end

local function padding(indent, depth)
    return indent and "\n" .. indent:rep(depth) or ""
end

-- How an object of a given set of keys is written: its keys in order, the
-- text before each value ('{"id":', ',"email":') and the closing text.
-- Users of a listing share a few such shapes, so an export builds each
-- once rather than sorting every user's keys.
local function new_layout(keys, indent, depth)
    table.sort(keys, function(a, b)
        return key_before(tostring(a), tostring(b))
    end)
    local inner = padding(indent, depth + 1)
    local colon = indent and ": " or ":"
    local prefix = {}
    for i, k in ipairs(keys) do
        prefix[i] = (i == 1 and "{" or ",") .. inner .. string_text(tostring(k)) .. colon
    end
    return { keys = keys, prefix = prefix, close = padding(indent, depth) .. "}" }
end

-- The layouts made last, per indent and depth, newest first: an object has
-- a layout's key set when it has as many keys and each of the layout's.
local recent = {}
local KEPT_LAYOUTS = 8

local function layout_of(v, keys, count, indent, depth)
    local mode = indent and depth or "compact"
    local list = recent[mode]
    if not list then
        list = {}
        recent[mode] = list
    end
    for i = 1, #list do
        local layout = list[i]
        local order = layout.keys
        if #order == count then
            local same = true
            for j = 1, count do
                if v[order[j]] == nil then
                    same = false
                    break
                end
            end
            if same then
                return layout
            end
        end
    end
    local layout = new_layout(keys, indent, depth)
    table.insert(list, 1, layout)
    list[KEPT_LAYOUTS + 1] = nil
    return layout
end

-- Appends the text of `v` to out[n + 1 ...]; returns the new n.
local function encode(v, out, n, indent, depth)
    local t = type(v)
    if t == "string" then
        out[n + 1] = string_text(v)
    elseif t == "number" then
        out[n + 1] = number_text(v)
    elseif t == "boolean" then
        out[n + 1] = v and "true" or "false"
    elseif v == nil or v == users.null then
        out[n + 1] = "null"
    elseif t ~= "table" then
        error("json: cannot encode a " .. t, 0)
    elseif is_array(v) then
        if v[1] == nil then
            out[n + 1] = "[]"
            return n + 1
        end
        local inner = padding(indent, depth + 1)
        for i = 1, #v do
            out[n + 1] = (i == 1 and "[" or ",") .. inner
            n = encode(v[i], out, n + 1, indent, depth + 1)
        end
        out[n + 1] = padding(indent, depth) .. "]"
    else
        local keys, count = {}, 0
        for k in pairs(v) do
            count = count + 1
            keys[count] = k
        end
        if count == 0 then
            out[n + 1] = "{}"
            return n + 1
        end
        local layout = layout_of(v, keys, count, indent, depth)
        local order, prefix = layout.keys, layout.prefix
        for i = 1, count do
            out[n + 1] = prefix[i]
            n = encode(v[order[i]], out, n + 1, indent, depth + 1)
        end
        out[n + 1] = layout.close
    end
    return n + 1
end

--- One value as compact JSON (one line).
-- @param v a string, number, boolean, table, nil or `users.null`
-- @treturn string
function json.encode(v)
    local out = {}
    encode(v, out, 0, nil, 0)
    return table.concat(out)
end

--- One value as JSON indented by two spaces.
-- @param v as for `encode`
-- @treturn string
function json.pretty(v)
    local out = {}
    encode(v, out, 0, "  ", 0)
    return table.concat(out)
end

--- Decodes one JSON text.
-- @tparam string s
-- @return the value, or nil and a message
function json.decode(s)
    local ok, v = pcall(cjson.decode, s)
    if not ok then
        signals.pass_interrupt(v)
        return nil, (tostring(v):gsub("^.-:%d+: ", ""))
    end
    return v
end

--- The JSON null of the decoder (lua-cjson's `cjson.null`).
json.null = cjson.null

return json
