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

local encode_value

local function encode_table(t, out, indent, depth)
    local pad, inner, sep = "", "", ","
    if indent then
        pad = "\n" .. indent:rep(depth)
        inner = "\n" .. indent:rep(depth + 1)
        sep = ","
    end
    if is_array(t) then
        if t[1] == nil then
            out[#out + 1] = "[]"
            return
        end
        out[#out + 1] = "["
        for i = 1, #t do
            out[#out + 1] = (i > 1 and sep or "") .. inner
            encode_value(t[i], out, indent, depth + 1)
        end
        out[#out + 1] = pad .. "]"
        return
    end
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = tostring(k)
    end
    if keys[1] == nil then
        out[#out + 1] = "{}"
        return
    end
    table.sort(keys, key_before)
    out[#out + 1] = "{"
    local colon = indent and ": " or ":"
    for i, k in ipairs(keys) do
        local v = t[k]
        if v == nil then
            v = t[tonumber(k)]
        end
        out[#out + 1] = (i > 1 and sep or "") .. inner .. cjson.encode(k) .. colon
        encode_value(v, out, indent, depth + 1)
    end
    out[#out + 1] = pad .. "}"
end

function encode_value(v, out, indent, depth)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = cjson.encode(v)
    elseif t == "number" then
        out[#out + 1] = number_text(v)
    elseif t == "boolean" then
        out[#out + 1] = v and "true" or "false"
    elseif t == "table" then
        encode_table(v, out, indent, depth)
    elseif v == nil or v == users.null then
        out[#out + 1] = "null"
    else
        error("json: cannot encode a " .. t, 0)
    end
end

--- One value as compact JSON (one line).
-- @param v a string, number, boolean, table, nil or `users.null`
-- @treturn string
function json.encode(v)
    local out = {}
    encode_value(v, out, nil, 0)
    return table.concat(out)
end

--- One value as JSON indented by two spaces.
-- @param v as for `encode`
-- @treturn string
function json.pretty(v)
    local out = {}
    encode_value(v, out, "  ", 0)
    return table.concat(out)
end

--- Decodes one JSON text.
-- @tparam string s
-- @return the value, or nil and a message
function json.decode(s)
    local ok, v = pcall(cjson.decode, s)
    if not ok then
        return nil, (tostring(v):gsub("^.-:%d+: ", ""))
    end
    return v
end

--- The JSON null of the decoder (lua-cjson's `cjson.null`).
json.null = cjson.null

return json
