--- The Passage Management API v1 (users): a client whose methods call the
-- API and return native Lua tables.
--
-- Every operation of the API is a method of the `Client` that `new` makes,
-- keeping the spec's name, `app_id` first. Bad arguments raise at once,
-- before any request, with a message that points at the caller's line.
-- Runtime failures return `nil, err`; `err` is described in
-- `passage.errors`. Every call can also be started without waiting
-- (`Client:start`, driven by `Client:poll`), and many at once
-- (`Client:bulk`); `passage.paginator` walks every user of an app.
-- Results are native Lua tables, as `passage.schema` describes them.
--
-- The guide ([docs/guide.md](../../../docs/guide.md) in the repository)
-- is the tour, with examples; this reference has each function's detail.
-- @module passage.users
-- @usage
-- local users = require "passage.users"
-- local client = users.new { api_key = os.getenv "PASSAGE_API_KEY" }
-- local user, err = client:get_user(app_id, user_id)
-- if not user then print(err) end
-- client:close()

-- The way of a call: its method (made from passage.operations) checks the
-- arguments and builds the request (prepare), the engine runs it on the
-- transport and settles the answer (passage.engine), passage.schema turns
-- the body into the value.
local bulk = require "passage.bulk"
local core = require "passage.core"
-- passage.cosocket is loaded by the first client made inside nginx: outside
-- it the cosocket transport is never used, and its code would only weigh on
-- the collector.
local cosocket
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

--- The version of the library, as in the rock's name ("0.1.0").
-- @field _VERSION

--- JSON `null`, where a null is kept: an element of an array, and an
-- object member when the client has `keep_null`. It equals `cjson.null`
-- (a lightuserdata).
-- @field null

--- The metatable of every decoded JSON array (an empty array has it, an
-- empty object does not). `passage.paginator.collect` gives its array
-- this metatable too.
-- @field array_mt

if core._VERSION ~= users._VERSION then
    error(string.format("passage.users %s found passage.core %s: reinstall the rock",
        users._VERSION, tostring(core._VERSION)))
end

local argerror, guard = errors.argument, errors.guard
local unpack = table.unpack or unpack -- luacheck: globals unpack

-- Arguments ---------------------------------------------------------------
-- How each argument named in passage.operations is checked: a check raises
-- an argument error on a bad value. Path arguments are ids, which
-- core.path checks and encodes into the URL (each one path segment) in one
-- step; check_id then tells what is wrong with a bad one.

local c_path = core.path
local MAX_TEXT_BYTES = filters.MAX_TEXT_BYTES

-- Blank is what core.path calls blank: only " \t\n\v\f\r" (Lua's %s).
local function check_id(what, v)
    if type(v) ~= "string" then
        argerror("%s: expected a string, got %s", what, type(v))
    end
    if not v:find("%S") then
        argerror("%s: must not be empty", what)
    end
    if #v > MAX_TEXT_BYTES then
        argerror("%s: longer than %d bytes", what, MAX_TEXT_BYTES)
    end
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
end

local ARGUMENTS = {
    app_id = check_id,
    user_id = check_id,
    device_id = check_id,
    identifier = check_id,
    create = function(_, req)
        check_user_request("create_user", req, true)
    end,
    update = function(_, req)
        check_user_request("update_user", req, false)
    end,
    params = function(_, params)
        filters.to_query(params) -- checked here; the query is built in prepare
    end,
}

-- Operations as the client runs them: each entry of passage.operations
-- with the checks of its arguments, its path as pieces around the path
-- arguments, and its result's reader.

-- "/apps/{app_id}/users/{user_id}" -> { "/apps/", "/users/", "" }: the
-- literal parts around the path arguments, which come first, in order; the
-- path is pieces[1] .. arg 1 .. pieces[2] .. arg 2 .. pieces[3].
local function path_pieces(name, op)
    local pieces, at = {}, 1
    for start, arg, stop in op.path:gmatch("(){([%w_]+)}()") do
        pieces[#pieces + 1] = op.path:sub(at, start - 1)
        assert(op.args[#pieces] == arg,
            "operation " .. name .. ": path arguments come first, in order")
        assert(ARGUMENTS[arg] == check_id, "operation " .. name .. ": path argument "
            .. arg .. " is not an id")
        at = stop
    end
    pieces[#pieces + 1] = op.path:sub(at)
    return pieces
end

local function position(op, arg)
    for i, name in ipairs(op.args) do
        if name == arg then
            return i
        end
    end
end

-- Each operation as the client runs it (see above), by name.
local RUNNABLE = {}
for name, op in pairs(operations) do
    local checks = {}
    for i, arg in ipairs(op.args) do
        checks[i] = assert(ARGUMENTS[arg], "operation " .. name .. ": no check for " .. arg)
    end
    RUNNABLE[name] = {
        name = name,
        method = op.method,
        args = op.args,
        checks = checks,
        path = path_pieces(name, op),
        query = type(op.query) == "string" and position(op, op.query) or op.query,
        body = op.body and position(op, op.body),
        result = assert(schema.results[op.result],
            "operation " .. name .. ": no result " .. tostring(op.result) .. " in passage.schema"),
        idempotent = op.idempotent,
        next = op.next,
    }
end

--- The names of every operation, sorted: each is a `Client` method, and
-- the name `Client:start` and `Client:bulk` take.
-- @table OPERATIONS
users.OPERATIONS = {}
for name in pairs(RUNNABLE) do
    users.OPERATIONS[#users.OPERATIONS + 1] = name
end
table.sort(users.OPERATIONS)

-- What each client keeps out of its table: its key is in the header sets,
-- and base_url may hold a password, so dumping a client shows neither.
local private = setmetatable({}, { __mode = "k" })

-- The transport for a call made now: nginx's cosockets where nginx allows
-- them, else libcurl; raises when the client was made for cosockets only.
local function transport_now(p)
    local ngx_transport = p.ngx
    if ngx_transport then
        local usable, phase = cosocket.available()
        if usable then
            return ngx_transport
        elseif not p.curl then
            argerror("transport \"ngx\": nginx allows no cosockets in its %s phase",
                tostring(phase))
        end
    end
    return p.curl
end

local prepare

-- The continuation of a call of `op` (see engine.lua): the next call, made
-- from the server's answer and the call's arguments. An id the checks
-- refuse is then a bad response, not a bad argument of the caller. Made
-- here rather than in prepare, whose compiled code then makes no closure.
local function continuation(p, op, ...)
    local function next_call(next_op, ...)
        if not next_op then
            return nil, ...
        end
        local ok, call = pcall(prepare, p, RUNNABLE[next_op], ...)
        if not ok then
            return nil, errors.new("decode", {
                message = "response: listed user has an unusable id: " .. tostring(call),
            })
        end
        return call
    end
    local n, raw = #op.args, { ... }
    return function(value)
        return next_call(op.next(value, unpack(raw, 1, n)))
    end
end

-- The engine call of `op` with the arguments of the client's method (any
-- number, as passage.operations declares them); raises an argument error
-- (errors.argument) on a bad one.
function prepare(p, op, ...)
    local names, checks, path = op.args, op.checks, op.path
    -- The path arguments are ids, encoded into the URL in one step; a bad
    -- one is told by its check. The query, body and continuation take the
    -- other arguments as they are, once checked.
    local target, bad = c_path(p.base_url, path, MAX_TEXT_BYTES, ...)
    if not target then
        check_id(names[bad], (select(bad, ...)))
        argerror("%s: not a usable id", names[bad]) -- should check_id ever disagree
    end
    for i = #path, #names do
        checks[i](names[i], (select(i, ...)))
    end
    local query = op.query
    if query then
        local params
        if type(query) == "function" then
            params = query(...)
        else
            params = (select(query, ...))
        end
        query = url.query(filters.to_query(params))
        if query ~= "" then
            target = target .. "?" .. query
        end
    end
    local body = op.body and cjson.encode((select(op.body, ...)))
    local continue = op.next and continuation(p, op, ...)
    local transport = transport_now(p)
    local sets = p.sets[transport]
    -- The last blocking call's table, else a new one with every field (so
    -- it is sized once); either way every field is set here.
    local call = p.spare_call or { operation = false, transport = false, method = false,
        url = false, headers = false, idempotent = false, result = false, body = false,
        check = false, next = false }
    p.spare_call = nil
    call.operation, call.transport, call.method, call.url = op.name, transport, op.method, target
    call.headers = body and sets.body or sets.plain
    call.idempotent, call.result, call.check = op.idempotent, op.result, op.result.check
    call.body, call.next = body, continue
    return call
end

-- The client ---------------------------------------------------------------

local Client = {}
Client.__index = Client

-- Inside nginx's Lua module, calls go over its cosockets where nginx allows
-- them (passage.cosocket); elsewhere, and outside nginx, over libcurl.
local function in_nginx()
    local n = rawget(_G, "ngx")
    return type(n) == "table" and n.socket ~= nil
end

-- What every request carries besides its key and the transport's
-- User-Agent (not in the reference; the benchmarks' peers send the same).
users.REQUEST_HEADERS = {
    "Accept: application/json",
    "Passage-Version: passage-lua " .. users._VERSION,
}

local function new_client(opts)
    local layers = options.resolve(opts)
    local choice = layers.client.transport
    if choice == "ngx" and not in_nginx() then
        argerror("new: transport \"ngx\" needs nginx's Lua module")
    end
    local key = layers.client.api_key
    local common = { "Authorization: Bearer " .. key, unpack(users.REQUEST_HEADERS) }
    local with_body = { unpack(common) }
    with_body[#with_body + 1] = "Content-Type: application/json"
    -- Per transport, its header sets: checked and built once, shared by
    -- every request.
    local p = { base_url = layers.client.base_url:gsub("/+$", ""), sets = {} }
    local transports = {}
    local function add(transport, usable)
        transports[#transports + 1] = { transport = transport, usable = usable }
        p.sets[transport] = { plain = transport:headers(common), body = transport:headers(with_body) }
        return transport
    end
    if choice ~= "ngx" then
        p.curl = add(core.transport(layers.transport), function() return true end)
    end
    if choice ~= "curl" and in_nginx() then
        cosocket = cosocket or require "passage.cosocket"
        p.ngx = add(cosocket.new(layers.transport), cosocket.available)
    end
    local self = setmetatable({
        engine = engine.new(transports, p.curl, layers.policy, errors.redactor(key)),
    }, Client)
    private[self] = p
    return self
end

--- Makes a client: one set of options and its own connections.
--
-- Each client keeps its configuration (nothing global); clients are
-- independent of each other. It holds connections until `Client:close`.
-- @tparam table opts the client's options, each described in `options`;
-- `api_key` is required, an unknown name raises
-- @treturn Client the client
-- @raise a bad option, with a message at the caller's line
-- @usage
-- local client = users.new {
--     api_key = os.getenv "PASSAGE_API_KEY",
--     timeout_ms = 10000,
-- }
-- @function new
users.new = guard(new_client)

-- A user and password in base_url are secrets: shown as ***.
local function printable_url(u)
    return (u:gsub("^(https?://)[^/]*@", "%1***@"))
end

--- A client of the API, made by `new`. Its methods are the operations of
-- the API: each checks its arguments (raising on a bad one), makes the
-- request, retries what is safe to retry, and returns the value or
-- `nil, err`. Ids (`app_id`, `user_id`, `device_id`) and identifiers are
-- non-blank strings of at most 1024 bytes; each id is sent as one
-- percent-encoded path segment, so no id can change the request's path.
-- `tostring(client)` shows the base URL without its user and password,
-- and never the key.
-- @type Client

function Client:__tostring()
    if self.engine.closed then
        return "passage.users client (closed)"
    end
    return "passage.users client (" .. printable_url(private[self].base_url) .. ")"
end

-- close: there is no __gc, since a client nobody holds may still have a
-- call running (users.new(o):get_user(...)); its transport frees itself
-- once no call, handle or walk reaches it.

--- Ends every call in flight (they finish with `err.kind == "cancelled"`)
-- and frees the connections. An operation, `start`, `bulk` or `poll` on a
-- closed client raises.
-- It is also the client's `__close`, for `local client <close> =
-- users.new(...)` on Lua 5.4. Closing is optional: a client nobody holds
-- frees its connections once no call, handle or walk uses it.
-- @within Lifetime
-- @usage
-- local client <close> = users.new { api_key = key }
function Client:close()
    self.engine:close()
end
Client.__close = Client.close

-- The call of operation `name` with its arguments, checked; raises an
-- argument error.
local function call_of(self, what, name, ...)
    if self.engine.closed then
        argerror("%s on a closed client", what)
    end
    local op = type(name) == "string" and RUNNABLE[name]
    if not op then
        argerror("%s: unknown operation %s", what, tostring(name))
    end
    return prepare(private[self], op, ...)
end

-- A blocking method's call is done with once the engine returns (its
-- handle let go of it), so its table serves the client's next call.
for name in pairs(RUNNABLE) do
    Client[name] = guard(function(self, ...)
        local call = call_of(self, name, name, ...)
        local value, err = self.engine:run(call)
        call.body, call.next = nil, nil -- it holds nothing of the call
        private[self].spare_call = call
        return value, err
    end)
end

--- Starts an operation without waiting and returns its `Handle`.
--
-- The request is on its way when `start` returns (on a kept-alive
-- connection; a new one is connecting by then), and it travels while the
-- host does other work. The arguments are checked now, as the blocking
-- method checks them. `Client:poll` (or `Handle:wait`) drives it; blocking
-- and started calls mix on one client.
-- @function Client:start
-- @string operation the operation's name, one of `OPERATIONS`
-- @param ... the operation's arguments, as its method takes them
-- @treturn Handle the call's handle
-- @raise an unknown operation, a bad argument, or a closed client
-- @within Calls without waiting
-- @usage
-- local h = client:start("get_user", app_id, user_id)
-- repeat client:poll(100) until h:done()
-- local user, err = h:result()
Client.start = guard(function(self, operation, ...)
    return self.engine:start(call_of(self, "start", operation, ...))
end)

--- Checks an operation's arguments as its method does, and tells what
-- request the call would make, without sending anything: for a dry run
-- that shows what would be sent, or for checking many records first and
-- reporting each bad one.
-- @function Client:check
-- @string operation the operation's name, one of `OPERATIONS`
-- @param ... the operation's arguments, as its method takes them
-- @treturn table `{ operation =, method =, url =, body = }`: the HTTP
-- method, the URL with every argument encoded (a user and password of
-- `base_url` shown as `***`) and the JSON body (nil when none); never a
-- header
-- @raise an unknown operation, a bad argument, or a closed client, with
-- the message the method would raise
-- @within Calls without waiting
-- @usage
-- local ok, problem = pcall(client.check, client, "create_user", app_id, record)
Client.check = guard(function(self, operation, ...)
    local call = call_of(self, "check", operation, ...)
    return { operation = call.operation, method = call.method, url = printable_url(call.url),
        body = call.body }
end)

-- Whether v is a client made by new (not in the reference).
function users.is_client(v)
    return getmetatable(v) == Client
end

-- Not in the reference (for layers over the client, as passage.paginator):
-- starts an operation as `start` does, but its handle finishes into `sink`
-- (a function called with the handle, which must not raise), never into
-- the host's poll. Returns nil, err (kind "cancelled") on a closed client;
-- raises a bad argument as `start` does.
function users.start_owned(client, sink, operation, ...)
    if client.engine.closed then
        return nil, errors.new("cancelled", { operation = operation, message = "client closed" })
    end
    return client.engine:start(call_of(client, "start", operation, ...), sink)
end

local function check_bulk(self, what, calls, opts)
    if self.engine.closed then
        argerror("%s on a closed client", what)
    end
    if type(calls) ~= "table" then
        argerror("%s: expected a list of calls, got %s", what, type(calls))
    end
    local max_in_flight = 16
    if opts ~= nil then
        if type(opts) ~= "table" then
            argerror("%s: expected an options table, got %s", what, type(opts))
        end
        for k in pairs(opts) do
            if k ~= "max_in_flight" and k ~= "progress" then
                argerror("%s: unknown option %s", what, tostring(k))
            end
        end
        max_in_flight = opts.max_in_flight or max_in_flight
        if not filters.is_whole(max_in_flight) or max_in_flight < 1 then
            argerror("%s: max_in_flight must be a whole number >= 1", what)
        end
        if opts.progress ~= nil and type(opts.progress) ~= "function" then
            argerror("%s: progress must be a function", what)
        end
    end
    local p, prepared = private[self], {}
    for i = 1, #calls do
        local c = calls[i]
        local name = type(c) == "table" and c[1]
        local op = type(name) == "string" and RUNNABLE[name]
        if not op then
            argerror("%s: call %d: unknown operation %s", what, i, tostring(name))
        end
        local ok, call = pcall(prepare, p, op, unpack(c, 2, 1 + #op.args))
        if not ok then
            argerror("%s: call %d: %s", what, i, (tostring(call):gsub("^passage%.users: ", "")))
        end
        prepared[i] = call
    end
    return prepared, max_in_flight
end

--- Starts many calls, a few at a time, and returns at once with their
-- `Job`.
--
-- Every call is checked before the first request (a bad one raises, and
-- nothing is sent); the first `max_in_flight` are on the wire when it
-- returns. The job moves on whenever the client is driven (`Client:poll`,
-- `Client:socket_action`, an attached loop, a blocking wait): each call
-- that finishes makes room for the next. One failure does not stop the
-- rest; retries and deadlines apply per call, as for single calls. Its
-- calls never come out of `Client:poll`.
-- @tparam {table,...} calls a list of calls, each `{ operation, args... }`
-- as `Client:start` takes them
-- @tparam[opt] table opts
-- @tparam[opt=16] int opts.max_in_flight how many calls are in flight at
-- once, at least 1
-- @tparam[opt] func opts.progress called as each call finishes, with a
-- table `p`: `p.done` calls finished so far, `p.failed` how many of them
-- failed, `p.total` the number of calls. A hook that raises stops the job
-- (calls still running are cancelled), and `Job:results` raises its error
-- as it was.
-- @treturn Job the job
-- @raise a bad call or option, with the call's index
-- @within Calls without waiting
-- @usage
-- local job = client:start_bulk(calls, { max_in_flight = 32 })
-- -- each frame:
-- client:poll(0, { max_ms = 4 })
-- if job:done() then handle(job:results()) end
-- @function Client:start_bulk
Client.start_bulk = guard(function(self, calls, opts)
    local prepared, max_in_flight = check_bulk(self, "start_bulk", calls, opts)
    return bulk.start(self.engine, prepared, max_in_flight, opts and opts.progress)
end)

--- Runs many calls, a few at a time, and returns every result in input
-- order: `Client:start_bulk` and a wait for its job.
--
-- The other calls of the client (started ones, walks) move on meanwhile;
-- the host's own started calls that finish stay queued for its poll.
-- @tparam {table,...} calls a list of calls, each `{ operation, args... }`
-- as `Client:start` takes them
-- @tparam[opt] table opts as `Client:start_bulk` takes them
-- @treturn {table,...} `results[i]` for `calls[i]`: `{ value = v }` or
-- `{ err = e }`
-- @raise a bad call or option, with the call's index; a progress hook's
-- error, as it was
-- @within Calls without waiting
-- @usage
-- local results = client:bulk({
--     { "get_user", app_id, id1 },
--     { "deactivate_user", app_id, id2 },
-- }, { max_in_flight = 32 })
-- for i, r in ipairs(results) do print(i, r.value or r.err) end
-- @function Client:bulk
Client.bulk = guard(function(self, calls, opts)
    local prepared, max_in_flight = check_bulk(self, "bulk", calls, opts)
    return bulk.start(self.engine, prepared, max_in_flight, opts and opts.progress):wait()
end)

-- The settling budget of poll's and socket_action's options table.
local function check_budget(what, opts)
    if opts == nil then
        return nil
    end
    if type(opts) ~= "table" then
        argerror("%s: expected an options table, got %s", what, type(opts))
    end
    for k in pairs(opts) do
        if k ~= "max_ms" then
            argerror("%s: unknown option %s", what, tostring(k))
        end
    end
    local max_ms = opts.max_ms
    if max_ms ~= nil and (type(max_ms) ~= "number" or max_ms ~= max_ms or max_ms < 0) then
        argerror("%s: max_ms must be a number >= 0", what)
    end
    return max_ms
end

local function check_poll(self, timeout_ms, opts)
    if self.engine.closed then
        argerror("poll on a closed client")
    end
    if timeout_ms ~= nil and (type(timeout_ms) ~= "number" or timeout_ms ~= timeout_ms
            or timeout_ms < 0) then
        argerror("poll: timeout_ms must be a number >= 0")
    end
    return check_budget("poll", opts)
end

-- Not in the reference (for passage.loop.*): checks a { max_ms = } table
-- as poll does, raising a bad one as `what`'s; returns max_ms.
users.check_budget = check_budget

--- Drives every transfer of the client and returns the handles of started
-- calls that finished.
--
-- Walks (`passage.paginator.start`) and bulk jobs (`Client:start_bulk`)
-- move on here too. When no started call has finished yet, it waits until
-- one does or `timeout_ms` has passed; work that finishes nothing of the
-- host's (a walk's page, a bulk call) does not cut the wait short, so a
-- game loop can sleep out its frame here. Each handle is returned once.
--
-- Decoding responses is most of a poll's work. With `opts.max_ms`, poll
-- stops decoding once that many milliseconds are spent (after at least
-- one response) and leaves the rest, as bytes, to the next poll: a game
-- step's share of the library stays near `max_ms` plus one response's
-- decode (about 1 ms for a 500-user page).
-- @tparam[opt=0] number timeout_ms the longest wait, in milliseconds; 0
-- never blocks
-- @tparam[opt] table opts `{ max_ms = M }`: the decoding budget of this
-- poll, in milliseconds
-- @treturn {Handle,...} the handles that finished (maybe none)
-- @raise a bad timeout or option, or a closed client
-- @within Calls without waiting
-- @usage
-- -- in a 50 ms server step: at most about 5 ms of the library's work
-- for _, h in ipairs(client:poll(0, { max_ms = 5 })) do on_done(h) end
-- @function Client:poll
Client.poll = guard(function(self, timeout_ms, opts)
    local max_ms = check_poll(self, timeout_ms, opts)
    return self.engine:poll(timeout_ms or 0, max_ms)
end)

--- How many calls of the client are in flight or waiting to be retried,
-- started ones and those of walks and bulk runs alike.
-- @treturn int the number of calls
-- @within Calls without waiting
function Client:pending()
    return self.engine:pending()
end

--- The sockets to watch, for a host that runs its own reactor (luv,
-- cqueues, an engine's epoll) instead of `Client:poll`.
--
-- The protocol, all a host needs (`passage.loop.luv` and
-- `passage.loop.cqueues` follow it for those loops):
--
-- 1. After every call into the client (`Client:start`, `start_bulk`,
--    `passage.paginator.start`, `Client:socket_action`, a blocking call,
--    `Client:close`), read `socket_changes` and apply each change: watch
--    the socket for `"in"`, `"out"` or `"inout"`, or stop watching it on
--    `"remove"`.
-- 2. Then arm one timer for `Client:timer_ms` milliseconds (none when it
--    is -1); 0 means "come back at once".
-- 3. When a socket is ready, call `Client:socket_action(fd, events)`
--    (`"err"` when the loop reports an error on it); when the timer fires,
--    `Client:socket_action()`. Then go to 1.
--
-- A socket is never closed before the host has been told `"remove"`: it is
-- closed at the host's next call into the client, so a loop can always
-- unregister an open descriptor, and a descriptor number is never reused
-- before its `"remove"` was read. A call that finishes without any socket
-- activity (in `start`, or during a blocking call) makes `timer_ms` 0, so
-- a host that follows the steps never misses it. `Client:poll` and
-- blocking calls may be mixed with this on one client.
-- @treturn {table,...} the changes since the last call, the last one per
-- socket, each `{ fd = n, events = e }` with `e` one of `"in"`, `"out"`,
-- `"inout"` or `"remove"` (stop watching); a `"remove"` comes only for a
-- socket that was reported before
-- @within Your own reactor
function Client:socket_changes()
    return self.engine:socket_changes()
end

--- When to call `Client:socket_action` with no socket: the transport's
-- next timeout or the next retry's, whichever comes first; 0 while
-- finished calls wait to be collected or decoded.
-- @treturn int milliseconds from now, or -1 when no timer is needed
-- @within Your own reactor
function Client:timer_ms()
    return self.engine:timer_ms()
end

local EVENTS = { ["in"] = true, out = true, inout = true, err = true }

local function check_socket_action(fd, events, opts)
    if fd ~= nil and not (filters.is_whole(fd) and fd >= 0 and fd <= 2147483647) then
        argerror("socket_action: fd must be a whole number >= 0, got %s", tostring(fd))
    end
    if events ~= nil and not EVENTS[events] then
        argerror("socket_action: events must be \"in\", \"out\", \"inout\" or \"err\", got %s",
            tostring(events))
    end
    if events ~= nil and fd == nil then
        argerror("socket_action: events without an fd")
    end
    return check_budget("socket_action", opts)
end

--- Lets the client work on a ready socket, or on its timer, and returns the
-- handles of started calls that finished. Walks and bulk jobs move on
-- here too.
-- @tparam[opt] int fd the ready socket; none for the timer
-- @tparam[opt] string events what it is ready for: `"in"`, `"out"`,
-- `"inout"` or `"err"`; none lets libcurl check
-- @tparam[opt] table opts `{ max_ms = M }`, the decoding budget, as
-- `Client:poll` takes it
-- @treturn {Handle,...} the handles that finished (maybe none)
-- @raise a bad fd, events or option
-- @within Your own reactor
-- @function Client:socket_action
Client.socket_action = guard(function(self, fd, events, opts)
    local max_ms = check_socket_action(fd, events, opts)
    return self.engine:socket_action(fd, events, max_ms)
end)

return users
