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
--
-- The doc comment of options.LIST is the options' reference entry: LDoc
-- shows it in passage.users (config.ld merges this file into that module),
-- and spec/docs_spec.lua checks that it names every option and its default.

--- The client's options.
-- @module passage.users
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

--- The options of `new`, in snake case with the unit in the name.
--
-- An unknown name raises, and so does a value of the wrong type, a number
-- that is not whole, or one below the least value the option allows (1
-- for timeouts, counts and sizes, 0 for delays). Numbers are milliseconds,
-- bytes or counts, as the name says.
-- @table options
-- @tfield string api_key the API key (required), sent as
-- `Authorization: Bearer ...`. It is never printed and never part of an
-- error: a server that echoes it back sees it replaced by `[REDACTED]`.
-- No space, control or non-ASCII byte.
-- @tfield[opt="https://api.passage.id/v1"] string base_url the API's
-- URL: `http://` or `https://`, a host, no query or fragment. A user and
-- password in it are never printed. The emulator's is
-- `http://127.0.0.1:8787/v1`.
-- @tfield[opt="auto"] string transport how calls travel: `"auto"` uses
-- nginx's cosockets inside nginx's Lua module wherever nginx allows them
-- (request handlers, timers) and libcurl everywhere else (outside nginx,
-- and in the nginx phases without cosockets, where a call blocks the
-- worker); `"curl"` always libcurl; `"ngx"` always cosockets (a call where
-- nginx allows none raises). The guide's OpenResty part tells each phase.
-- @tfield[opt=30000] int timeout_ms the longest time of a whole call,
-- every attempt and backoff included: no call runs past it
-- @tfield[opt] int attempt_timeout_ms the longest time of one attempt
-- (default: what is left of `timeout_ms`)
-- @tfield[opt=4] int max_attempts attempts per call, the first one
-- included (1 turns retries off). Which failures are retried is told with
-- each kind in `passage.errors.kinds`; `err.attempts` says how many were
-- made.
-- @tfield[opt=100] int retry_base_delay_ms the backoff before the second
-- attempt; it doubles with each attempt. Half of each backoff is fixed and
-- half random, so clients spread out.
-- @tfield[opt=5000] int retry_max_delay_ms the longest backoff
-- @tfield[opt=30000] int retry_after_max_ms the longest wait a server's
-- `Retry-After` (seconds or an HTTP date) may ask for before a retry:
-- asking for longer, or for more than the call's time left, ends the call
-- with `err.retry_after`
-- @tfield[opt=10000] int connect_timeout_ms the longest time to set up one
-- connection
-- @tfield[opt=16777216] int max_response_bytes the largest response body
-- (16 MiB); a larger one ends the call with kind `"too_large"`
-- @tfield[opt] int max_host_connections the most connections to the API
-- host at once (default: no limit); calls past it wait for a connection
-- @tfield[opt] string ca_file a file of trusted CA certificates for TLS
-- (default: the system's); inside nginx, the guide's OpenResty part tells
-- which calls use it
-- @tfield[opt] string ca_path a directory of trusted CA certificates, as
-- `ca_file`
-- @tfield[opt=false] bool unsafe_skip_tls_verify turns TLS peer and host
-- verification off: for test servers only, never for the real API
-- @tfield[opt="passage-lua/0.1.0"] string user_agent the `User-Agent`
-- header (the default is "passage-lua/" followed by `_VERSION`)
-- @tfield[opt=false] bool keep_null keep a JSON `null` object member as
-- `null` instead of leaving its key absent
-- @tfield[opt] func on_attempt called after each HTTP attempt of every
-- call, for logs and traces, with a table: `operation`, `method`, `path`
-- (the URL's path and query: no host, user, password or key), `status`
-- (nil when no HTTP answer came), `kind` (the failure's kind, nil on a
-- 2xx), `ms` (the attempt's time), `attempt` (1 for the first) and `retry`
-- (true when another attempt follows). Errors it raises are ignored.

local TRANSPORTS = { auto = true, curl = true, ngx = true }

local function transport_name(name, v)
    if not TRANSPORTS[v] then
        argerror("new: %s must be \"auto\", \"curl\" or \"ngx\"", name)
    end
end

-- name, type, default, layer, and for numbers the least value allowed (0
-- would mean "none" or "the library's default" below us: never what a
-- caller who wrote it meant).
options.LIST = {
    { name = "api_key", type = "string", layer = "client", required = true, check = plain_key },
    { name = "base_url", type = "string", default = "https://api.passage.id/v1", layer = "client",
      check = http_url },
    { name = "transport", type = "string", default = "auto", layer = "client",
      check = transport_name },
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
    { name = "on_attempt", type = "function", layer = "policy" },
}

local BY_NAME = {}
for _, spec in ipairs(options.LIST) do
    BY_NAME[spec.name] = spec
end

-- The names and types both transports take (core.transport, and
-- passage.cosocket.new): the transport layer's options, the default time
-- limit of an exchange, and the decoder's depth (not a client option; its
-- limits are the decoder's). The transports check a name and its type,
-- never a limit: those are this file's. The C transport keeps its own list
-- of the names, which spec/transport_spec.lua compares with this one.
options.TRANSPORT = { timeout_ms = "number", max_depth = "number" }
for _, spec in ipairs(options.LIST) do
    if spec.layer == "transport" then
        options.TRANSPORT[spec.name] = spec.type
    end
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
