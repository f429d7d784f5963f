-- Scenarios of the client (passage.users) inside nginx, for
-- spec/openresty_spec.lua: the spec's private nginx (one worker, LuaJIT,
-- nginx's Lua module) POSTs { scenario = name, ... } as JSON to a location
-- calling run(), and answers with the scenario's result as JSON. Each
-- scenario makes its client from the options it is given, as a script
-- would, and closes it at the end; worker_client is the client of the
-- worker, made once in init_worker_by_lua (init_worker()).
-- luacheck: globals ngx
local cjson = require("cjson").new()
local core = require "passage.core"
local paginator = require "passage.paginator"
local users = require "passage.users"

local unpack_args = table.unpack or unpack -- luacheck: globals unpack
local now_ms = core.now_ms

local M = {}

-- An err as JSON carries it: its fields and its printed form.
local ERR_FIELDS = { "kind", "status", "code", "message", "body", "attempts", "operation",
    "retry_after" }

local function err_table(err)
    if type(err) ~= "table" then
        return { raised = tostring(err) }
    end
    local t = { text = tostring(err) }
    for _, k in ipairs(ERR_FIELDS) do
        t[k] = err[k]
    end
    return t
end

-- { value = v } or { err = err_table }.
local function outcome(value, err)
    if err ~= nil or value == nil then
        return { err = err_table(err) }
    end
    return { value = value }
end

-- A light thread of the same request or timer, counting 5 ms sleeps: while
-- a call yields to nginx, it ticks; while a call blocks the worker, it
-- cannot. Returns stop(), which ends it and returns the ticks.
local function ticker()
    local state = { ticks = 0, running = true }
    local thread = ngx.thread.spawn(function()
        while state.running do
            ngx.sleep(0.005)
            if state.running then
                state.ticks = state.ticks + 1
            end
        end
    end)
    return function()
        state.running = false
        ngx.thread.kill(thread)
        return state.ticks
    end
end

-- Runs f(client) with a client of opts and, when asked, a ticker; returns
-- f's table with ms, ticks and the phase added.
local function with_client(p, f)
    local client = users.new(p.opts)
    local stop = p.ticker and ticker()
    local t0 = now_ms()
    local out = f(client)
    out.ms = now_ms() - t0
    out.ticks = stop and stop() or nil
    out.phase = ngx.get_phase()
    client:close()
    return out
end

-- Calls client:name(...) from a line of this file (not a tail call), so
-- that an argument error, raised at the caller's line, names it:
-- { raised = message } when it raises.
local function call_here(client, name, ...)
    local args = { n = select("#", ...), ... }
    local ok, value, err = pcall(function()
        local v, e = client[name](client, unpack_args(args, 1, args.n))
        return v, e
    end)
    if not ok then
        return { raised = tostring(value) }
    end
    return outcome(value, err)
end

local scenarios = {}

-- calls: { { operation, args... }, ... }, blocking, one after the other.
function scenarios.calls(p)
    return with_client(p, function(client)
        local results = {}
        for i, c in ipairs(p.calls) do
            local t0 = now_ms()
            results[i] = call_here(client, c[1], unpack_args(c, 2))
            results[i].ms = now_ms() - t0
        end
        return { results = results }
    end)
end

-- A walk of app p.app with params and { in_flight }: the ids in the order
-- handed out, the pages and the progress reports.
function scenarios.walk(p)
    return with_client(p, function(client)
        local ids, pages, reports = {}, 0, 0
        local last
        local ok, err = pcall(function()
            local opts = {
                in_flight = p.in_flight,
                progress = function(r)
                    reports = reports + 1
                    last = { pages = r.pages, users = r.users, total_users = r.total_users }
                end,
            }
            for page in paginator.pages(client, p.app, p.params, opts) do
                pages = pages + 1
                for _, u in ipairs(page.users) do
                    ids[#ids + 1] = u.id
                end
            end
        end)
        return { ids = ids, pages = pages, reports = reports, last = last,
            err = not ok and err_table(err) or nil }
    end)
end

-- client:bulk(calls, { max_in_flight }), with its progress reports.
function scenarios.bulk(p)
    return with_client(p, function(client)
        local reports = {}
        local results = client:bulk(p.calls, {
            max_in_flight = p.max_in_flight,
            progress = function(r)
                reports[#reports + 1] = { r.done, r.failed, r.total }
            end,
        })
        for i, r in ipairs(results) do
            results[i] = outcome(r.value, r.err)
        end
        return { results = results, reports = reports }
    end)
end

-- Started calls: handles driven by poll, waited for, cancelled, closed.
function scenarios.handles(p)
    return with_client(p, function(client)
        local out = {}
        local started = {}
        for i, id in ipairs(p.ids) do
            started[i] = client:start("get_user", p.app, id)
        end
        out.pending = client:pending()
        out.unfinished = select(2, pcall(started[1].result, started[1]))
        out.first_done = started[1]:done()
        -- poll hands each finished handle out once.
        local seen, polls = {}, 0
        local n = 0
        while n < #started and polls < 100 do
            polls = polls + 1
            for _, h in ipairs(client:poll(1000)) do
                seen[h] = (seen[h] or 0) + 1
                n = n + 1
            end
        end
        out.handed = {}
        out.results = {}
        for i, h in ipairs(started) do
            out.handed[i] = seen[h] or 0
            out.results[i] = outcome(h:result())
        end
        out.polls = polls
        -- A handle waited for does not come out of a later poll.
        local waited = client:start("get_user", p.app, p.ids[1])
        out.waited = outcome(waited:wait())
        -- A cancelled one does, once, as "cancelled"; a closed one does not.
        local cancelled = client:start("get_user", p.app, p.ids[1])
        cancelled:cancel()
        local closed = client:start("get_user", p.app, p.ids[1])
        closed:close()
        local after = client:poll(0)
        out.after = #after
        out.after_is_cancelled = after[1] == cancelled
        out.cancelled = outcome(cancelled:result())
        out.closed_done = closed:done()
        -- poll with nothing to do waits out its timeout, yielding.
        local t0 = now_ms()
        out.idle = #client:poll(p.idle_ms)
        out.idle_ms = now_ms() - t0
        out.pending_after = client:pending()
        return out
    end)
end

-- Runs p.inner (a scenario's parameters) in an ngx.timer callback; its
-- result lands under p.key (read with `stored`).
function scenarios.in_timer(p)
    local dict = ngx.shared.results
    dict:delete(p.key)
    local ok, err = ngx.timer.at(0, function(premature)
        if premature then
            return
        end
        local inner = p.inner
        local done, result = pcall(scenarios[inner.scenario], inner)
        if not done then
            result = { error = tostring(result) }
        end
        dict:set(p.key, cjson.encode(result))
    end)
    return { ok = ok, err = err }
end

function scenarios.stored(p)
    local s = ngx.shared.results:get(p.key)
    return s and cjson.decode(s) or { pending = true }
end

-- The worker's client (made in init_worker) in a request.
function scenarios.worker_client(p)
    local client = assert(M.worker_client, "no worker client")
    local t0 = now_ms()
    local result = outcome(client:get_user(p.app, p.id))
    result.ms = now_ms() - t0
    return result
end

-- content_by_lua entry point.
function M.run()
    require("support.scenario_runner")(scenarios)
end

-- init_worker_by_lua: makes the worker's client, which calls over libcurl
-- here (nginx has no cosockets in this phase) and over cosockets in
-- requests and timers; a client forced to cosockets refuses to call here.
-- What happened lands under "init_worker".
function M.init_worker(opts, app, identifier)
    local client = users.new(opts)
    M.worker_client = client
    local forced_opts = {}
    for k, v in pairs(opts) do
        forced_opts[k] = v
    end
    forced_opts.transport = "ngx"
    local forced = users.new(forced_opts)
    local result = {
        phase = ngx.get_phase(),
        auto = call_here(client, "get_user_by_identifier", app, identifier),
        forced = call_here(forced, "get_user_by_identifier", app, identifier),
    }
    forced:close()
    ngx.shared.results:set("init_worker", cjson.encode(result))
end

return M
