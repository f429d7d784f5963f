-- The client's options, each declared once: its type, default, limits and
-- the layer that takes it. users.new checks a table against this list,
-- fills in the defaults and hands each layer its part; nothing below
-- repeats a default or a check. Adding an option is one entry here (and
-- the code of the layer that reads it).
--
-- Layers:
--   client     read by passage.users itself (the key, the URL)
--   policy     the engine: deadlines and retries (passage.engine)
--   transport  the transport: libcurl's (passage.core) or nginx's
--              cosockets (passage.cosocket); both take the same names
local errors = require "passage.errors"

local options = {}

local VERSION = "0.1.0"
options.VERSION = VERSION

local argerror = errors.argument

local function no_control_bytes(name, v)
    if v:find("%c") then
        argerror("new: %s holds a control byte", name)
    end
end

-- A key holding CR, LF or any control byte could add a header.
local function plain_key(name, v)
    if v:match("^%s*$") then
        argerror("new: %s is required", name)
    end
    if v:find("[%c\128-\255 ]") then
        argerror("new: %s holds a control, space or non-ASCII byte", name)
    end
end

-- base_url may hold a user and password: no message quotes it.
local function http_url(name, v)
    if not v:match("^https?://[^/]") then
        argerror("new: %s must start with http:// or https:// and a host", name)
    elseif v:find("[%c%s\128-\255]") then
        argerror("new: %s holds a space, control or non-ASCII byte", name)
    elseif v:find("[?#]") then
        argerror("new: %s must have no query or fragment", name)
    end
end

-- name, type, default, layer, and for numbers the least value allowed (0
-- would mean "none" or "the library's default" below us: never what a
-- caller who wrote it meant).
options.LIST = {
    { name = "api_key", type = "string", layer = "client", required = true, check = plain_key },
    { name = "base_url", type = "string", default = "https://api.passage.id/v1", layer = "client",
      check = http_url },
    { name = "timeout_ms", type = "number", default = 30000, min = 1, layer = "policy" },
    { name = "attempt_timeout_ms", type = "number", min = 1, layer = "policy" },
    { name = "max_attempts", type = "number", default = 4, min = 1, layer = "policy" },
    { name = "retry_base_delay_ms", type = "number", default = 100, min = 0, layer = "policy" },
    { name = "retry_max_delay_ms", type = "number", default = 5000, min = 0, layer = "policy" },
    { name = "retry_after_max_ms", type = "number", default = 30000, min = 0, layer = "policy" },
    { name = "connect_timeout_ms", type = "number", default = 10000, min = 1, layer = "transport" },
    { name = "max_response_bytes", type = "number", default = 16 * 1024 * 1024, min = 1,
      layer = "transport" },
    { name = "max_host_connections", type = "number", min = 1, layer = "transport" },
    { name = "ca_file", type = "string", layer = "transport", check = no_control_bytes },
    { name = "ca_path", type = "string", layer = "transport", check = no_control_bytes },
    { name = "unsafe_skip_tls_verify", type = "boolean", default = false, layer = "transport" },
    { name = "user_agent", type = "string", default = "passage-lua/" .. VERSION, layer = "transport",
      check = no_control_bytes },
    { name = "keep_null", type = "boolean", default = false, layer = "transport" },
}

local BY_NAME = {}
for _, spec in ipairs(options.LIST) do
    BY_NAME[spec.name] = spec
end

local function is_whole(v)
    return v == v and v == math.floor(v) and v >= 0 and v < 2 ^ 53
end

-- Checks `opts` (raising an argument error on the first bad entry) and
-- returns { client = {...}, policy = {...}, transport = {...} }, every
-- option in its layer's table with its value or default.
function options.resolve(opts)
    if type(opts) ~= "table" then
        argerror("new: expected an options table, got %s", type(opts))
    end
    for name, value in pairs(opts) do
        local spec = BY_NAME[name]
        if not spec then
            argerror("new: unknown option %s", tostring(name))
        end
        if type(value) ~= spec.type then
            argerror("new: option %s: expected %s, got %s", name, spec.type, type(value))
        end
        if spec.type == "number" and not (is_whole(value) and value >= spec.min) then
            argerror("new: option %s: expected a whole number >= %d, got %s", name, spec.min,
                tostring(value))
        end
    end
    local layers = { client = {}, policy = {}, transport = {} }
    for _, spec in ipairs(options.LIST) do
        local value = opts[spec.name]
        if value == nil then
            value = spec.default
        end
        if value == nil and spec.required then
            argerror("new: %s is required", spec.name)
        end
        if value ~= nil and spec.check then
            spec.check(spec.name, value)
        end
        layers[spec.layer][spec.name] = value
    end
    return layers
end

return options
