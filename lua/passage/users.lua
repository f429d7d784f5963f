-- passage.users: the Passage Management API v1 user operations.
--
--   local users = require "passage.users"
--   local client = users.new { api_key = os.getenv "PASSAGE_API_KEY" }
--   local user, err = client:get_user(app_id, user_id)
--
-- Bad arguments raise at once, before any request. Runtime failures return
-- nil, err (see passage.errors). Every call can also be started without
-- waiting: client:start("get_user", app_id, user_id) returns a handle, and
-- client:poll(timeout_ms) drives all transfers (see README, "Concurrency").
local bulk = require "passage.bulk"
local core = require "passage.core"
local engine = require "passage.engine"
local errors = require "passage.errors"
local filters = require "passage.filters"
local url = require "passage.url"

-- A private encoder instance: the global cjson configuration belongs to the
-- host application and is never changed here.
local cjson = require("cjson").new()

local users = {
    _VERSION = "0.1.0",
    null = core.null,          -- JSON null where a null is kept (keep_null)
    array_mt = core.array_mt,  -- the metatable of every decoded JSON array
}

if core._VERSION ~= users._VERSION then
    error(string.format("passage.users %s found passage.core %s: reinstall the rock",
        users._VERSION, tostring(core._VERSION)))
end

local unpack_args = table.unpack or unpack -- luacheck: globals unpack

local DEFAULT_BASE_URL = "https://api.passage.id/v1"

-- Client options: name -> { type, default }.
local OPTIONS = {
    api_key = { "string" },
    base_url = { "string", DEFAULT_BASE_URL },
    connect_timeout_ms = { "number", 10000 },
    timeout_ms = { "number", 30000 },          -- a whole call, retries included
    attempt_timeout_ms = { "number" },         -- one attempt (default: what is left)
    max_attempts = { "number", 4 },
    retry_base_delay_ms = { "number", 100 },
    retry_max_delay_ms = { "number", 5000 },
    retry_after_max_ms = { "number", 30000 },  -- longest Retry-After honoured
    max_response_bytes = { "number", 16 * 1024 * 1024 },
    max_host_connections = { "number" },
    ca_file = { "string" },
    ca_path = { "string" },
    unsafe_skip_tls_verify = { "boolean", false },
    user_agent = { "string" },
    keep_null = { "boolean", false },
}

local argerror = errors.argument

local function check_options(opts)
    if type(opts) ~= "table" then
        argerror("new: expected an options table, got %s", type(opts))
    end
    local o = {}
    for name, value in pairs(opts) do
        local spec = OPTIONS[name]
        if not spec then
            argerror("new: unknown option %s", tostring(name))
        end
        if type(value) ~= spec[1] then
            argerror("new: option %s: expected %s, got %s", name, spec[1], type(value))
        end
        if spec[1] == "number" and not (value >= 0 and filters.is_whole(value)) then
            argerror("new: option %s: expected a whole number >= 0, got %s", name, tostring(value))
        end
        o[name] = value
    end
    for name, spec in pairs(OPTIONS) do
        if o[name] == nil then
            o[name] = spec[2]
        end
    end
    if type(o.api_key) ~= "string" or o.api_key:match("^%s*$") then
        argerror("new: api_key is required")
    end
    -- A key holding CR, LF or any control byte could add a header.
    if o.api_key:find("[%c\128-\255 ]") then
        argerror("new: api_key holds a control, space or non-ASCII byte")
    end
    if o.user_agent and o.user_agent:find("%c") then
        argerror("new: user_agent holds a control byte")
    end
    -- base_url may hold a user and password: no message quotes it.
    local base = o.base_url:gsub("/+$", "")
    if not base:match("^https?://[^/]") then
        argerror("new: base_url must start with http:// or https:// and a host")
    elseif base:find("[%c%s\128-\255]") then
        argerror("new: base_url holds a space, control or non-ASCII byte")
    elseif base:find("[?#]") then
        argerror("new: base_url must have no query or fragment")
    end
    o.base_url = base
    -- 0 would mean "none" or "libcurl's default" below us: never what a
    -- caller who wrote it meant, so it is refused rather than passed on.
    for _, name in ipairs { "max_attempts", "timeout_ms", "connect_timeout_ms",
            "attempt_timeout_ms", "max_response_bytes" } do
        if o[name] and o[name] < 1 then
            argerror("new: %s must be at least 1", name)
        end
    end
    return o
end

local Client = {}
Client.__index = Client

-- The API key lives here, out of the client table, so that printing or
-- dumping a client (or an error) can never show it.
local secrets = setmetatable({}, { __mode = "k" })

function users.new(opts)
    local o = check_options(opts)
    local transport = core.transport {
        connect_timeout_ms = o.connect_timeout_ms,
        timeout_ms = o.timeout_ms,
        max_response_bytes = o.max_response_bytes,
        ca_file = o.ca_file,
        ca_path = o.ca_path,
        tls_verify = not o.unsafe_skip_tls_verify,
        user_agent = o.user_agent,
        keep_null = o.keep_null,
        max_host_connections = o.max_host_connections,
    }
    local self = setmetatable({
        base_url = o.base_url,
        options = {
            timeout_ms = o.timeout_ms,
            attempt_timeout_ms = o.attempt_timeout_ms,
            max_attempts = o.max_attempts,
            retry_base_delay_ms = o.retry_base_delay_ms,
            retry_max_delay_ms = o.retry_max_delay_ms,
            retry_after_max_ms = o.retry_after_max_ms,
        },
        transport = transport,
    }, Client)
    self.engine = engine.new(transport, self.options, errors.redactor(o.api_key))
    local common = {
        "Authorization: Bearer " .. o.api_key,
        "Accept: application/json",
        "Passage-Version: passage-lua " .. users._VERSION,
    }
    local with_body = { common[1], common[2], common[3], "Content-Type: application/json" }
    -- Checked and turned into libcurl lists once, shared by every request.
    secrets[self] = {
        headers = transport:headers(common),
        headers_with_body = transport:headers(with_body),
    }
    return self
end

-- A user and password in base_url are secrets: shown as ***.
local function printable_url(u)
    return (u:gsub("^(https?://)[^/]*@", "%1***@"))
end

function Client:__tostring()
    if not self.transport then
        return "passage.users client (closed)"
    end
    return "passage.users client (" .. printable_url(self.base_url) .. ")"
end

function Client:close()
    if self.transport then
        self.engine:cancel_all()
        self.transport:close()
        self.transport = nil
        secrets[self] = nil
    end
end
-- No __gc: a client nobody holds any more may still have a call running
-- (users.new(o):get_user(...)); its transport frees itself once no call,
-- handle or walk can reach it.
Client.__close = Client.close

-- Argument checks -------------------------------------------------------

local c_segment = core.segment

-- Checks an id and returns it as a URL path segment (see core.segment).
local MAX_TEXT_BYTES = filters.MAX_TEXT_BYTES

local function check_id(what, v)
    local segment, nonblank = c_segment(v)
    if not nonblank then
        if type(v) ~= "string" then
            argerror("%s: expected a string, got %s", what, type(v))
        end
        argerror("%s: must not be empty", what)
    end
    if #v > MAX_TEXT_BYTES then
        argerror("%s: longer than %d bytes", what, MAX_TEXT_BYTES)
    end
    return segment
end

local function check_metadata(md)
    if type(md) ~= "table" then
        argerror("user_metadata: expected a table, got %s", type(md))
    end
    for k, v in pairs(md) do
        if type(k) ~= "string" then
            argerror("user_metadata: keys must be strings, got %s", type(k))
        end
        local t = type(v)
        if t == "number" then
            if v ~= v or v == math.huge or v == -math.huge then
                argerror("user_metadata.%s: not a finite number", k)
            end
        elseif t ~= "string" and t ~= "boolean" then
            argerror("user_metadata.%s: expected a string, number or boolean, got %s", k, t)
        end
    end
end

local USER_FIELDS = { email = "string", phone = "string", user_metadata = "table" }

local function check_user_request(what, req, need_identifier)
    if type(req) ~= "table" then
        argerror("%s: expected a request table, got %s", what, type(req))
    end
    local n = 0
    for k, v in pairs(req) do
        local want = USER_FIELDS[k]
        if not want then
            argerror("%s: unknown field %s", what, tostring(k))
        end
        if type(v) ~= want then
            argerror("%s: field %s: expected %s, got %s", what, k, want, type(v))
        end
        n = n + 1
    end
    if req.user_metadata then
        check_metadata(req.user_metadata)
    end
    if need_identifier and (req.email or "") == "" and (req.phone or "") == "" then
        argerror("%s: an email or a phone is required", what)
    end
    if n == 0 then
        argerror("%s: nothing to update", what)
    end
end

-- Response checks: a 2xx whose body is not what the spec promises is a
-- "decode" error, never a half-filled table handed to the script.

local function decode_error(message)
    return errors.new("decode", { message = message })
end

-- The fields of UserInfo and ListPaginatedUsersItem with a fixed type; a
-- missing one is tolerated (older servers omit some), a wrong one is not.
local USER_TYPES = {
    id = "string", email = "string", phone = "string", status = "string",
    created_at = "string", updated_at = "string", last_login_at = "string",
    login_count = "number", email_verified = "boolean", phone_verified = "boolean",
}

-- A null field is an absent one, whether or not keep_null kept it.
local function wrong_field(u)
    for field, want in pairs(USER_TYPES) do
        local v = u[field]
        local t = type(v)
        if t ~= want and v ~= nil and v ~= core.null then
            return string.format("user field %s: expected %s, got %s", field, want, t)
        end
    end
    return "user without an id"
end

-- The same check in C: a 500-user page runs it 500 times, and a type()
-- call per field costs several times more.
local USER_RESPONSE_FIELDS = {
    id = "string", email = "string?", phone = "string?", status = "string?",
    created_at = "string?", updated_at = "string?", last_login_at = "string?",
    login_count = "number?", email_verified = "boolean?", phone_verified = "boolean?",
}
local user_ok = core.checker(USER_RESPONSE_FIELDS)

local function bad_user(u)
    if user_ok(u) then
        return nil
    end
    if type(u) ~= "table" then
        return "expected a user object"
    end
    return wrong_field(u)
end

-- `checked`: the decoder ran the same check on every object at "user" as
-- it read them, and all passed (see CHECKED_WHILE_DECODING).
local function user_result(body, checked)
    local user = type(body) == "table" and body.user or nil
    if not (checked and type(user) == "table") then
        local problem = bad_user(user)
        if problem then
            return nil, decode_error("response: " .. problem)
        end
    end
    return user
end

local function true_result()
    return true
end

local list_ok = core.checker {
    users = "table", total_users = "number", page = "number", limit = "number",
    created_before = "number",
}

local function list_result(body, checked)
    if not list_ok(body) then
        if type(body) ~= "table" or type(body.users) ~= "table" then
            return nil, decode_error("response: expected a list with users")
        end
        for _, field in ipairs { "total_users", "page", "limit", "created_before" } do
            if type(body[field]) ~= "number" then
                return nil, decode_error("response: list field " .. field .. " is not a number")
            end
        end
    end
    local list = body.users
    if checked then
        return body
    end
    for i = 1, #list do
        local problem = bad_user(list[i])
        if problem then
            return nil, decode_error(string.format("response: users[%d]: %s", i, problem))
        end
    end
    return body
end

-- The user checks again, for the decoder to run on the objects at a path
-- while it parses them: a 500-user page then needs no second pass over its
-- users. When the decoder is not sure (it only sees the JSON, so a duplicate
-- key makes it fail an object), the Lua check above decides.
local CHECKED_WHILE_DECODING = {
    [user_result] = core.checker(USER_RESPONSE_FIELDS, { "user" }),
    [list_result] = core.checker(USER_RESPONSE_FIELDS, { "users", "[]" }),
}

local function devices_result(body)
    if type(body) ~= "table" or type(body.devices) ~= "table" then
        return nil, decode_error("response: expected a devices list")
    end
    return body.devices
end

-- Operations --------------------------------------------------------------
-- Each builds a call for the engine; `level` points error messages at the
-- script line that called the client.

-- base/apps/{app}/users[/{user}[/{tail}]], from checked segments, built in
-- one concatenation.
local function users_path(self, app)
    return self.base_url .. "/apps/" .. app .. "/users"
end

local function user_path(self, app, user, tail)
    if tail then
        return self.base_url .. "/apps/" .. app .. "/users/" .. user .. "/" .. tail
    end
    return self.base_url .. "/apps/" .. app .. "/users/" .. user
end

local function call(self, operation, method, target, finish, idempotent, body)
    local s = secrets[self]
    return {
        operation = operation,
        method = method,
        url = target,
        headers = body and s.headers_with_body or s.headers,
        body = body,
        idempotent = idempotent,
        finish = finish,
        check = CHECKED_WHILE_DECODING[finish],
    }
end

local function list_call(self, operation, app, params, finish)
    local query = url.query(filters.to_query(params))
    local target = users_path(self, app)
    if query ~= "" then
        target = target .. "?" .. query
    end
    return call(self, operation, "GET", target, finish, true)
end

local prepare = {}

function prepare.get_user(self, app_id, user_id)
    local app = check_id("app_id", app_id)
    local user = check_id("user_id", user_id)
    return call(self, "get_user", "GET", user_path(self, app, user), user_result, true)
end

function prepare.create_user(self, app_id, req)
    local app = check_id("app_id", app_id)
    check_user_request("create_user", req, true)
    return call(self, "create_user", "POST", users_path(self, app), user_result, false,
        cjson.encode(req))
end

function prepare.update_user(self, app_id, user_id, req)
    local app = check_id("app_id", app_id)
    local user = check_id("user_id", user_id)
    check_user_request("update_user", req, false)
    return call(self, "update_user", "PATCH", user_path(self, app, user), user_result,
        true, cjson.encode(req))
end

function prepare.delete_user(self, app_id, user_id)
    local app = check_id("app_id", app_id)
    local user = check_id("user_id", user_id)
    return call(self, "delete_user", "DELETE", user_path(self, app, user), true_result, true)
end

function prepare.activate_user(self, app_id, user_id)
    local app = check_id("app_id", app_id)
    local user = check_id("user_id", user_id)
    return call(self, "activate_user", "PATCH",
        user_path(self, app, user, "activate"), user_result, true)
end

function prepare.deactivate_user(self, app_id, user_id)
    local app = check_id("app_id", app_id)
    local user = check_id("user_id", user_id)
    return call(self, "deactivate_user", "PATCH",
        user_path(self, app, user, "deactivate"), user_result, true)
end

function prepare.list_paginated_users(self, app_id, params)
    local app = check_id("app_id", app_id)
    return list_call(self, "list_paginated_users", app, params, list_result)
end

function prepare.list_user_devices(self, app_id, user_id)
    local app = check_id("app_id", app_id)
    local user = check_id("user_id", user_id)
    return call(self, "list_user_devices", "GET",
        user_path(self, app, user, "devices"), devices_result, true)
end

function prepare.delete_user_device(self, app_id, user_id, device_id)
    local app = check_id("app_id", app_id)
    local user = check_id("user_id", user_id)
    local device = check_id("device_id", device_id)
    return call(self, "delete_user_device", "DELETE",
        user_path(self, app, user, "devices/" .. device), true_result, true)
end

function prepare.revoke_user_refresh_tokens(self, app_id, user_id)
    local app = check_id("app_id", app_id)
    local user = check_id("user_id", user_id)
    return call(self, "revoke_user_refresh_tokens", "DELETE",
        user_path(self, app, user, "tokens"), true_result, true)
end

-- As the official SDKs do it: a list with limit=1 on the lower-cased
-- identifier, then a get of the user found.
function prepare.get_user_by_identifier(self, app_id, identifier)
    local app = check_id("app_id", app_id)
    check_id("identifier", identifier)
    local function found(body)
        local list, err = list_result(body)
        if not list then
            return nil, err
        end
        local first = list.users[1]
        if not first then
            return nil, errors.new("not_found", {
                code = "user_not_found",
                message = "no user with identifier " .. identifier:lower(),
            })
        end
        -- The id comes from the server: one the checks refuse (an empty
        -- string, say) is a bad response, not a bad argument of the caller.
        local ok, next_call = pcall(prepare.get_user, self, app_id, first.id)
        if not ok then
            return nil, decode_error("response: listed user has an unusable id: "
                .. tostring(next_call))
        end
        return nil, nil, next_call
    end
    local c = list_call(self, "get_user_by_identifier", app,
        { limit = 1, identifier = identifier:lower() }, found)
    return c
end

users.OPERATIONS = {}
for name in pairs(prepare) do
    users.OPERATIONS[#users.OPERATIONS + 1] = name
end
table.sort(users.OPERATIONS)

-- Both entry points (the blocking method and start) call this directly,
-- so level 3 is the script's line: 1 here, 2 the entry point, 3 the script.
local rethrow = errors.rethrow

local function checked_call(self, name, ...)
    if not self.transport then
        error("passage.users: " .. name .. " on a closed client", 3)
    end
    local ok, c = pcall(prepare[name], self, ...)
    if not ok then
        rethrow(3, c) -- not a tail call: keeps the level
    end
    return c
end

-- Starts `operation` without waiting; returns a request handle with
-- :done(), :result(), :wait(), :cancel(). Once done, handle.connects is the
-- number of new connections its attempts opened (0: a kept-alive one served).
function Client:start(operation, ...)
    if type(operation) ~= "string" or not prepare[operation] then
        error("passage.users: start: unknown operation " .. tostring(operation), 2)
    end
    local c = checked_call(self, operation, ...) -- not a tail call: keeps error levels
    return self.engine:start(c)
end

for name in pairs(prepare) do
    Client[name] = function(self, ...)
        return self.engine:run(checked_call(self, name, ...))
    end
end

-- Runs many calls with at most opts.max_in_flight (default 16) in flight.
-- `calls` is a list of { "operation", args... }; every call is checked
-- before the first request. Returns results in input order, each
-- { value = v } or { err = e }.
function Client:bulk(calls, opts)
    if not self.transport then
        error("passage.users: bulk on a closed client", 2)
    end
    if type(calls) ~= "table" then
        error("passage.users: bulk: expected a list of calls, got " .. type(calls), 2)
    end
    local max_in_flight = 16
    if opts ~= nil then
        if type(opts) ~= "table" then
            error("passage.users: bulk: expected an options table, got " .. type(opts), 2)
        end
        for k in pairs(opts) do
            if k ~= "max_in_flight" then
                error("passage.users: bulk: unknown option " .. tostring(k), 2)
            end
        end
        max_in_flight = opts.max_in_flight or max_in_flight
        if not filters.is_whole(max_in_flight) or max_in_flight < 1 then
            error("passage.users: bulk: max_in_flight must be a whole number >= 1", 2)
        end
    end
    local prepared = {}
    for i = 1, #calls do
        local c = calls[i]
        local name = type(c) == "table" and c[1]
        if type(name) ~= "string" or not prepare[name] then
            error(string.format("passage.users: bulk: call %d: unknown operation %s", i,
                tostring(name)), 2)
        end
        local ok, call_or_err = pcall(prepare[name], self, unpack_args(c, 2))
        if not ok then
            local message = tostring(call_or_err):gsub("^passage%.users: ", "")
            error(string.format("passage.users: bulk: call %d: %s", i, message), 2)
        end
        prepared[i] = call_or_err
    end
    return bulk.run(self.engine, prepared, max_in_flight)
end

-- Drives every transfer of this client for at most timeout_ms (0 never
-- blocks) and returns the handles that finished.
function Client:poll(timeout_ms)
    if not self.transport then
        error("passage.users: poll on a closed client", 2)
    end
    if timeout_ms ~= nil and (type(timeout_ms) ~= "number" or timeout_ms < 0) then
        error("passage.users: poll: timeout_ms must be a number >= 0", 2)
    end
    return self.engine:poll(timeout_ms or 0)
end

function Client:pending()
    return self.transport and self.engine:pending() or 0
end

-- The socket interface, for hosts that run their own reactor: watch the
-- sockets of socket_changes(), call socket_action(fd, events) when one is
-- ready and socket_action() when timer_ms() has passed.
function Client:socket_changes()
    return self.transport:socket_changes()
end

function Client:timer_ms()
    return self.engine:timer_ms()
end

function Client:socket_action(fd, events)
    return self.engine:socket_action(fd, events)
end

return users
