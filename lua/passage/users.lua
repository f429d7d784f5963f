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
--
-- The way of a call: its method (made from passage.operations) checks the
-- arguments and builds the request (prepare), the engine runs it on the
-- transport and settles the answer (passage.engine), passage.schema turns
-- the body into the value.
local bulk = require "passage.bulk"
local core = require "passage.core"
local engine = require "passage.engine"
local errors = require "passage.errors"
local filters = require "passage.filters"
local operations = require "passage.operations"
local options = require "passage.options"
local schema = require "passage.schema"
local url = require "passage.url"

-- A private encoder instance: the global cjson configuration belongs to the
-- host application and is never changed here.
local cjson = require("cjson").new()

local users = {
    _VERSION = options.VERSION,
    null = core.null,          -- JSON null where a null is kept (keep_null)
    array_mt = core.array_mt,  -- the metatable of every decoded JSON array
}

if core._VERSION ~= users._VERSION then
    error(string.format("passage.users %s found passage.core %s: reinstall the rock",
        users._VERSION, tostring(core._VERSION)))
end

local argerror, rethrow = errors.argument, errors.rethrow
local unpack_args = table.unpack or unpack -- luacheck: globals unpack

-- Arguments ---------------------------------------------------------------
-- How each argument named in passage.operations is checked; each check
-- returns what the request uses (an id as a URL path segment).

local c_segment = core.segment
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

local USER_REQUEST_FIELDS = { email = "string", phone = "string", user_metadata = "table" }

local function check_user_request(what, req, need_identifier)
    if type(req) ~= "table" then
        argerror("%s: expected a request table, got %s", what, type(req))
    end
    local n = 0
    for k, v in pairs(req) do
        local want = USER_REQUEST_FIELDS[k]
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
    return req
end

local ARGUMENTS = {
    app_id = check_id,
    user_id = check_id,
    device_id = check_id,
    identifier = function(what, v)
        check_id(what, v)
        return v
    end,
    create = function(_, req)
        return check_user_request("create_user", req, true)
    end,
    update = function(_, req)
        return check_user_request("update_user", req, false)
    end,
    params = function(_, params)
        filters.to_query(params) -- checked here; the query is built in prepare
        return params
    end,
}

-- Operations as the client runs them: each entry of passage.operations
-- with the checks of its arguments, its path as a function of the checked
-- path arguments, and its result's reader.

-- "/apps/{app_id}/users/{user_id}" -> function(a, b) return "/apps/" .. a
-- .. "/users/" .. b end, in one concatenation.
local function path_function(name, op)
    local s, holes = {}, 0
    local at = 1
    for before, arg, stop in op.path:gmatch("()({[%w_]+})()") do
        holes = holes + 1
        assert(op.args[holes] == arg:sub(2, -2),
            "operation " .. name .. ": path arguments come first, in order")
        s[#s + 1] = op.path:sub(at, before - 1)
        at = stop
    end
    s[#s + 1] = op.path:sub(at)
    if holes == 1 then
        return function(a) return s[1] .. a .. s[2] end
    elseif holes == 2 then
        return function(a, b) return s[1] .. a .. s[2] .. b .. s[3] end
    end
    assert(holes == 3, "operation " .. name .. ": 1 to 3 path arguments")
    return function(a, b, c) return s[1] .. a .. s[2] .. b .. s[3] .. c .. s[4] end
end

local function position(op, arg)
    for i, name in ipairs(op.args) do
        if name == arg then
            return i
        end
    end
end

local OPS = {}
for name, op in pairs(operations) do
    assert(#op.args <= 3, "operation " .. name .. ": at most three arguments")
    local checks = {}
    for i, arg in ipairs(op.args) do
        checks[i] = assert(ARGUMENTS[arg], "operation " .. name .. ": no check for " .. arg)
    end
    OPS[name] = {
        name = name,
        method = op.method,
        args = op.args,
        checks = checks,
        path = path_function(name, op),
        query = type(op.query) == "string" and position(op, op.query) or op.query,
        body = op.body and position(op, op.body),
        result = schema.results[op.result],
        idempotent = op.idempotent,
        next = op.next,
    }
end

users.OPERATIONS = {}
for name in pairs(OPS) do
    users.OPERATIONS[#users.OPERATIONS + 1] = name
end
table.sort(users.OPERATIONS)

-- What each client keeps out of its table: its key is in the header sets,
-- and base_url may hold a password, so dumping a client shows neither.
local private = setmetatable({}, { __mode = "k" })

local function pick(i, a, b, c)
    if i == 1 then
        return a
    elseif i == 2 then
        return b
    end
    return c
end

-- The engine call of `op` with the arguments a, b, c of the client's
-- method; raises an argument error (errors.argument) on a bad one.
local prepare
function prepare(p, op, a, b, c)
    local names, checks = op.args, op.checks
    local n = #names
    -- Raw arguments kept for the query, body and continuation; checked ones
    -- (ids as path segments) for the path.
    local ra, rb, rc = a, b, c
    if n >= 1 then a = checks[1](names[1], a) end
    if n >= 2 then b = checks[2](names[2], b) end
    if n >= 3 then c = checks[3](names[3], c) end
    local target = p.base_url .. op.path(a, b, c)
    local query = op.query
    if query then
        local params
        if type(query) == "function" then
            params = query(ra, rb, rc)
        else
            params = pick(query, ra, rb, rc)
        end
        query = url.query(filters.to_query(params))
        if query ~= "" then
            target = target .. "?" .. query
        end
    end
    local body = op.body and cjson.encode(pick(op.body, ra, rb, rc))
    local continue = op.next
    if continue then
        -- The next request comes from the server's answer: an id the checks
        -- refuse is a bad response, not a bad argument of the caller.
        continue = function(value)
            local next_op, x, y, z = op.next(value, ra, rb, rc)
            if not next_op then
                return nil, x
            end
            local ok, call = pcall(prepare, p, OPS[next_op], x, y, z)
            if not ok then
                return nil, errors.new("decode", {
                    message = "response: listed user has an unusable id: " .. tostring(call),
                })
            end
            return call
        end
    end
    return {
        operation = op.name,
        method = op.method,
        url = target,
        headers = body and p.headers_with_body or p.headers,
        body = body,
        idempotent = op.idempotent,
        result = op.result,
        check = op.result.check,
        next = continue,
    }
end

-- The client ---------------------------------------------------------------

local Client = {}
Client.__index = Client

local function new_client(opts)
    local layers = options.resolve(opts)
    local transport = core.transport(layers.transport)
    local key = layers.client.api_key
    local common = {
        "Authorization: Bearer " .. key,
        "Accept: application/json",
        "Passage-Version: passage-lua " .. users._VERSION,
    }
    local with_body = { common[1], common[2], common[3], "Content-Type: application/json" }
    local self = setmetatable({
        engine = engine.new(transport, layers.policy, errors.redactor(key)),
    }, Client)
    private[self] = {
        base_url = layers.client.base_url:gsub("/+$", ""),
        -- Checked and turned into transport header sets once, shared by
        -- every request.
        headers = transport:headers(common),
        headers_with_body = transport:headers(with_body),
    }
    return self
end

function users.new(opts)
    local ok, client = pcall(new_client, opts)
    if not ok then
        rethrow(client)
    end
    return client
end

-- A user and password in base_url are secrets: shown as ***.
function Client:__tostring()
    if self.engine.closed then
        return "passage.users client (closed)"
    end
    return "passage.users client ("
        .. private[self].base_url:gsub("^(https?://)[^/]*@", "%1***@") .. ")"
end

-- Ends every call in flight as "cancelled" and frees the connections; also
-- __close (local c <close> = users.new ...). There is no __gc: a client
-- nobody holds may still have a call running (users.new(o):get_user(...)),
-- and its transport frees itself once no call, handle or walk reaches it.
function Client:close()
    self.engine:close()
end
Client.__close = Client.close

-- The call of operation `name` with its arguments, checked; raises an
-- argument error.
local function call_of(self, what, name, a, b, c)
    if self.engine.closed then
        argerror("%s on a closed client", what)
    end
    local op = type(name) == "string" and OPS[name]
    if not op then
        argerror("%s: unknown operation %s", what, tostring(name))
    end
    return prepare(private[self], op, a, b, c)
end

for name in pairs(OPS) do
    Client[name] = function(self, a, b, c)
        local ok, call = pcall(call_of, self, name, name, a, b, c)
        if not ok then
            rethrow(call)
        end
        return self.engine:run(call)
    end
end

-- Starts `operation` without waiting; returns a request handle with
-- :done(), :result(), :wait(), :cancel(), :close(). Once done,
-- handle.connects is the number of new connections its attempts opened
-- (0: a kept-alive one served).
function Client:start(operation, a, b, c)
    local ok, call = pcall(call_of, self, "start", operation, a, b, c)
    if not ok then
        rethrow(call)
    end
    return self.engine:start(call)
end

-- As start, for layers that wait for their own handles (passage.paginator):
-- poll never hands this one out.
function Client:start_private(operation, a, b, c)
    local ok, call = pcall(call_of, self, "start_private", operation, a, b, c)
    if not ok then
        rethrow(call)
    end
    return self.engine:start(call, false)
end

local function check_bulk(self, calls, opts)
    if self.engine.closed then
        argerror("bulk on a closed client")
    end
    if type(calls) ~= "table" then
        argerror("bulk: expected a list of calls, got %s", type(calls))
    end
    local max_in_flight = 16
    if opts ~= nil then
        if type(opts) ~= "table" then
            argerror("bulk: expected an options table, got %s", type(opts))
        end
        for k in pairs(opts) do
            if k ~= "max_in_flight" and k ~= "progress" then
                argerror("bulk: unknown option %s", tostring(k))
            end
        end
        max_in_flight = opts.max_in_flight or max_in_flight
        if not filters.is_whole(max_in_flight) or max_in_flight < 1 then
            argerror("bulk: max_in_flight must be a whole number >= 1")
        end
        if opts.progress ~= nil and type(opts.progress) ~= "function" then
            argerror("bulk: progress must be a function")
        end
    end
    local p, prepared = private[self], {}
    for i = 1, #calls do
        local c = calls[i]
        local name = type(c) == "table" and c[1]
        local op = type(name) == "string" and OPS[name]
        if not op then
            argerror("bulk: call %d: unknown operation %s", i, tostring(name))
        end
        local ok, call = pcall(prepare, p, op, unpack_args(c, 2))
        if not ok then
            argerror("bulk: call %d: %s", i, tostring(call):gsub("^passage%.users: ", ""))
        end
        prepared[i] = call
    end
    return prepared, max_in_flight
end

-- Runs many calls with at most opts.max_in_flight (default 16) in flight.
-- `calls` is a list of { "operation", args... }; every call is checked
-- before the first request. Returns results in input order, each
-- { value = v } or { err = e }.
function Client:bulk(calls, opts)
    local ok, prepared, max_in_flight = pcall(check_bulk, self, calls, opts)
    if not ok then
        rethrow(prepared)
    end
    return bulk.run(self.engine, prepared, max_in_flight, opts and opts.progress)
end

local function check_poll(self, timeout_ms)
    if self.engine.closed then
        argerror("poll on a closed client")
    end
    if timeout_ms ~= nil and (type(timeout_ms) ~= "number" or timeout_ms ~= timeout_ms
            or timeout_ms < 0) then
        argerror("poll: timeout_ms must be a number >= 0")
    end
end

-- Drives every transfer of this client for at most timeout_ms (0 never
-- blocks) and returns the handles that finished.
function Client:poll(timeout_ms)
    local ok, problem = pcall(check_poll, self, timeout_ms)
    if not ok then
        rethrow(problem)
    end
    return self.engine:poll(timeout_ms or 0)
end

function Client:pending()
    return self.engine:pending()
end

-- The socket interface, for hosts that run their own reactor: watch the
-- sockets of socket_changes(), call socket_action(fd, events) when one is
-- ready and socket_action() when timer_ms() has passed.
function Client:socket_changes()
    return self.engine:socket_changes()
end

function Client:timer_ms()
    return self.engine:timer_ms()
end

function Client:socket_action(fd, events)
    return self.engine:socket_action(fd, events)
end

return users
