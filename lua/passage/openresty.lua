--- passage.users inside nginx's Lua module (OpenResty, or a
-- distribution's libnginx-mod-http-lua) without stalling the worker.
--
-- The client's calls are blocking C over libcurl, and an nginx worker runs
-- every request of the process in one thread, so a call made there holds
-- up all of them. `run` makes the call in one of nginx's thread pool
-- threads instead (`ngx.run_worker_thread`), inside that thread's own Lua
-- VM, while the calling request yields. It works in the request phases
-- (rewrite, access, content), not in `init*` or timers.
--
-- Each thread VM keeps one client per distinct options (so connections are
-- reused across calls that land on the same thread): pass the same options
-- for the same API, not per-request variations.
--
-- Values cross between the VMs as plain data: strings, numbers, booleans,
-- `passage.users.null` and tables of those. Arrays therefore arrive
-- without `passage.users.array_mt`.
-- @module passage.openresty
-- @usage
-- # nginx.conf, main level:
-- thread_pool passage threads=8;
--
-- -- content_by_lua_block (also rewrite_by_lua*, access_by_lua*):
-- local openresty = require "passage.openresty"
-- local user, err = openresty.run("passage", opts, "get_user", app_id, user_id)
local errors = require "passage.errors"

local openresty = {}

local MODULE = "passage.openresty"

-- In a thread VM: options key -> client.
local clients = {}

local function options_key(opts)
    if type(opts) ~= "table" then
        error("passage.openresty: expected an options table, got " .. type(opts), 3)
    end
    local names = {}
    for k in pairs(opts) do
        names[#names + 1] = tostring(k)
    end
    table.sort(names)
    local parts = {}
    for i, k in ipairs(names) do
        local v = opts[k]
        parts[i] = string.format("%q=%s:%q", k, type(v), tostring(v))
    end
    return table.concat(parts, ",")
end

local function client_for(opts)
    local key = options_key(opts)
    local client = clients[key]
    if not client then
        client = require("passage.users").new(opts)
        clients[key] = client
    end
    return client
end

local operations

local function is_operation(name)
    if not operations then
        operations = {}
        for _, op in ipairs(require("passage.users").OPERATIONS) do
            operations[op] = true
        end
    end
    return operations[name] == true
end

-- A copy without metatables or anything that cannot cross VMs.
local function plain(v, depth)
    local t = type(v)
    if t ~= "table" then
        if t == "function" or t == "thread" or t == "userdata" then
            return nil
        end
        return v
    end
    if depth > 100 then
        return nil
    end
    local copy = {}
    for k, x in pairs(v) do
        local kt = type(k)
        if kt == "string" or kt == "number" then
            copy[k] = plain(x, depth + 1)
        end
    end
    return copy
end

local ERROR_FIELDS = { "kind", "status", "code", "message", "body", "attempts", "operation",
    "retry_after" }

local function plain_error(err)
    if type(err) ~= "table" then
        return { kind = "network", message = tostring(err) }
    end
    local flat = {}
    for _, k in ipairs(ERROR_FIELDS) do
        flat[k] = plain(err[k], 1)
    end
    return flat
end

-- Runs inside the thread VM (the module name and "call" are what
-- run_worker_thread is given). Returns value, or nil, flat_err; for "bulk",
-- the results list with flat errors. Raises on bad arguments.
function openresty.call(opts, operation, ...)
    local client = client_for(opts)
    if operation == "bulk" then
        local results = client:bulk(...)
        local out = {}
        for i, r in ipairs(results) do
            out[i] = r.err and { err = plain_error(r.err) } or { value = plain(r.value, 1) }
        end
        return out
    end
    if not is_operation(operation) then
        error("passage.openresty: unknown operation " .. tostring(operation), 2)
    end
    local value, err = client[operation](client, ...)
    if value == nil then
        return nil, plain_error(err)
    end
    return plain(value, 1)
end

--- Closes the clients this Lua VM keeps (for tests and reloads); the next
-- call makes new ones.
function openresty.close_all()
    for key, client in pairs(clients) do
        client:close()
        clients[key] = nil
    end
end

local function restore_errors(results)
    for _, r in ipairs(results) do
        if r.err then
            setmetatable(r.err, errors.Error)
        end
    end
    return results
end

--- Runs an operation in an nginx thread pool and returns what the blocking
-- call returns. The calling request yields meanwhile; the worker serves
-- other requests.
-- @string pool the name of a `thread_pool` of nginx.conf
-- @tparam table opts the client's options (@{passage.users.options|options})
-- @string operation the name of a client method (one of
-- `passage.users.OPERATIONS`), or `"bulk"` with the arguments of
-- @{passage.users.Client:bulk|bulk}
-- @param ... the operation's arguments
-- @return[1] the value (for `"bulk"`, the results in input order, each
-- `{ value = v }` or `{ err = e }`)
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong (it prints and has the
-- fields of an error)
-- @raise a bad argument (as the blocking call does), an unknown pool, or a
-- thread failure
function openresty.run(pool, opts, operation, ...)
    local ok, value, err = ngx.run_worker_thread(pool, MODULE, "call", opts, operation, ...)
    if not ok then
        -- A bad argument, an unknown pool, or a thread failure.
        error(tostring(value), 2)
    end
    if value == nil then
        if type(err) == "table" then
            return nil, setmetatable(err, errors.Error)
        end
        return nil, errors.new("network", { message = tostring(err) })
    end
    if operation == "bulk" then
        return restore_errors(value)
    end
    return value
end

return openresty
