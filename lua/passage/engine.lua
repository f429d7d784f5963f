-- The request engine of a client: runs calls on its transport with a
-- deadline per call and retries, and hands back request handles. A
-- blocking call is a start and a wait; bulk runs and walks start calls and
-- wait for them; every finished transfer is settled in one place (settle),
-- whose verdict is the pure engine.outcome.
--
-- A call is a table made by passage.users:
--   operation                  "get_user", ... (for errors)
--   transport                  which of the engine's transports carries it
--   method, url, headers, body what to send (headers: a header set of that
--                              transport)
--   idempotent                 true when a retry is safe
--   result                     passage.schema.results entry: read(body,
--                              checked) turns a 2xx body into the value, and
--                              its `check` runs in the decoder
--   next                       optional continuation: function(value) ->
--                              the next call (same handle) | nil, err
--
-- The transport seam (the only transport methods used here; libcurl's in
-- passage.core and nginx's in passage.cosocket both provide them):
--   transport:start(method, url, headers, body, timeout_ms) -> request | nil
--       puts the request on its way without blocking; nil when the
--       transport was closed meanwhile
--   transport:wait(request, timeout_ms [, keep]) -> done
--       drives everything until `request` is done or the time is up; unless
--       keep, a done request is handed over and perform() skips it
--   transport:perform(timeout_ms) -> { request, ... }
--       drives everything, returns what finished; waits up to timeout_ms
--       when nothing has (with nothing in flight: sleeps, the backoff sleep)
--   transport:close()            ends every transfer (kind "cancelled")
--   request:response(check [, into]) -> { kind, message, sent, status,
--       retry_after, content_type, body, checked, decode_error, raw,
--       body_size, connects } (once; the request is released), written into
--       `into` (a table without these fields) when given | nil, message
--       when building it raised (out of memory, say; the request is left
--       for close)
--   request:close()              ends a transfer still running
--   request:size() (optional)    the body bytes received: a budgeted poll
--       leaves a response whose decode would not fit for the next one
-- and for hosts with their own reactor (libcurl only): socket_changes(),
-- timer_ms(), socket_action(fd, events).
--
-- A client has one transport, or two inside nginx: cosockets where nginx
-- allows them and libcurl elsewhere (passage.users picks per call). Each is
-- given as { transport =, usable = function() -> boolean }: drive() waits
-- on the last usable one and only turns the others over.
--
-- Handles go to a sink when they finish: the host's queue (what poll
-- returns) for calls the script started, a table of the caller's (bulk), or
-- nowhere (blocking calls, walks, which wait for their own). So a walk's or
-- a bulk's requests never surface in the host's poll.
--
-- Lifetimes: a handle holds its engine, the engine its transport, so a
-- running call keeps all it uses alive. close() may run at any allocation
-- (a finalizer): it ends every call as "cancelled" and leaves a transport
-- that does nothing, so the loops below end on their own.
local errors = require "passage.errors"
local retry = require "passage.retry"

local now_ms = require("passage.clock").now_ms
local floor, max = math.floor, math.max

local engine = {}

local Engine = {}
Engine.__index = Engine

local Handle = {}
Handle.__index = Handle

-- Responses are read into the engine's spare table (a table less per
-- call), taken while one is settled: a collect nested in a settle (a
-- hook's or a finalizer's call) gets a table of its own. Emptied after
-- each, it keeps no body between calls.
local function empty(response)
    response.kind, response.message, response.sent, response.status = nil, nil, nil, nil
    response.retry_after, response.content_type, response.body_size = nil, nil, nil
    response.connects, response.body, response.checked = nil, nil, nil
    response.decode_error, response.raw = nil, nil
end

-- The spare table, made with a key for every field: a key set to nil stays
-- in a table until it grows, so filling and emptying it never adds a key
-- (which would grow it, and a growth drops the keys that are nil, to be
-- added again: a rehash per call).
local function response_table()
    local t = { kind = 0, message = 0, sent = 0, status = 0, retry_after = 0, content_type = 0,
        body_size = 0, connects = 0, body = 0, checked = 0, decode_error = 0, raw = 0 }
    empty(t)
    return t
end

-- transports: a list of { transport =, usable = } (see above); reactor: the
-- one that offers the socket interface, or nil. policy: timeout_ms,
-- attempt_timeout_ms (or nil), max_attempts, retry_base_delay_ms,
-- retry_max_delay_ms, retry_after_max_ms. redact(err) takes the client's
-- secret out of the server's texts in err.
function engine.new(transports, reactor, policy, redact)
    return setmetatable({
        transports = transports,
        reactor = reactor,
        policy = policy,
        redact = redact,
        in_flight = {},   -- transport request -> handle
        arrived = {},     -- finished transfers not settled yet (poll's max_ms)
        ms_per_byte = 1 / 1e6, -- what settling has cost (about 1 ms a MB to start)
        backing_off = {}, -- handles waiting for their next attempt
        finished = {},    -- the host's queue: started handles not yet polled
        spare = nil,      -- the handle of the last blocking call, for the next
        spare_response = response_table(), -- responses are read into it (see collect)
        closed = false,
    }, Engine)
end

-- Removes `h` from a list; searched from the end, where it almost always is.
local function remove_from(list, h)
    for i = #list, 1, -1 do
        if list[i] == h then
            table.remove(list, i)
            return
        end
    end
end

local function cancelled(message)
    return errors.new("cancelled", { message = message })
end

local function finish(self, h, value, err)
    h.state = "done"
    h.request = nil
    h.value, h.err = value, err
    if err then
        err.attempts = err.attempts or h.attempts
        err.operation = err.operation or h.operation
        self.redact(err)
    end
    local sink = h.sink
    if sink == nil then
        sink = self.finished
    end
    if type(sink) == "function" then
        sink(h) -- a walk's or a bulk job's own (never raises)
    elseif sink then
        sink[#sink + 1] = h
    end
end

local function attempt(self, h, now)
    if self.closed then
        return finish(self, h, nil, cancelled("client closed"))
    end
    local remaining = h.deadline - now
    if remaining <= 0 then
        return finish(self, h, nil, h.last_err or errors.new("timeout", {
            message = "no time left for another attempt",
        }))
    end
    local limit = self.policy.attempt_timeout_ms
    if limit and limit < remaining then
        remaining = limit
    end
    local call = h.call
    -- start() rounds the timeout up to whole milliseconds itself.
    local req = call.transport:start(call.method, call.url, call.headers, call.body, remaining)
    if not req then
        return finish(self, h, nil, cancelled("client closed"))
    end
    h.attempts = h.attempts + 1
    h.state = "running"
    h.request = req
    h.attempt_started = now
    self.in_flight[req] = h
end

-- Tells an attached event loop (passage.loop.*) that the sockets or the
-- timer may have changed outside its own callbacks: a call was started, or
-- the client closed.
local function wake(self)
    local hook = self.wake
    if hook then
        hook()
    end
end

-- A new handle with every field it can get (so the table is sized once),
-- each set by begin(): a handle kept for another call (Engine:run) is then
-- as good as a new one.
local function new_handle()
    return setmetatable({ engine = false, call = false, operation = false, sink = false,
        attempts = false, connects = false, deadline = false, state = false, request = false,
        value = false, err = false, taken = false, due = false, last_err = false,
        attempt_started = false, on_arrival = false }, Handle)
end

local function begin(self, h, call, sink, now)
    h.engine, h.call, h.operation, h.sink = self, call, call.operation, sink
    h.attempts = 0
    h.connects = 0 -- new connections its attempts opened (0: kept-alive ones served)
    h.deadline, h.state = now + self.policy.timeout_ms, "running"
    h.request, h.value, h.err, h.taken, h.due, h.last_err = nil, nil, nil, nil, nil, nil
    h.attempt_started = nil
    h.on_arrival = nil -- set by a walk: called once, when an answer is in
    attempt(self, h, now)
    wake(self)
    return h
end

-- sink: nil for the host's queue, false for none, a list to append to, or
-- a function called with the handle (which must not raise).
function Engine:start(call, sink)
    return begin(self, new_handle(), call, sink, now_ms())
end

-- What one finished transfer means for `call`, with no I/O, clock or policy:
--   value                     success
--   nil, err, transient       failure; transient = worth another attempt
--                             (if the policy and the deadline allow it)
--   nil, nil, false, next     the call continues with the request `next`
-- `response` is the transport's request:response() table.
function engine.outcome(call, response)
    local status = response.status
    if response.kind then
        local err = errors.new(response.kind, {
            message = response.message,
            status = status ~= 0 and status or nil,
        })
        return nil, err, retry.is_transient(response, call.idempotent)
    end
    if status >= 200 and status < 300 then
        if response.decode_error then
            return nil, errors.new("decode", {
                status = status,
                message = "response is not JSON: " .. response.decode_error,
                body = response.raw,
            }), false
        end
        local value, err = call.result.read(response.body, response.checked)
        if err then
            err.status = status
            return nil, err, false
        end
        if call.next then
            local next_call
            next_call, err = call.next(value)
            if not next_call then
                return nil, err, false
            end
            return nil, nil, false, next_call
        end
        return value
    end
    local err = errors.from_http(response)
    if response.retry_after then
        err.retry_after = retry.parse_retry_after(response.retry_after)
    end
    return nil, err, retry.is_transient(response, call.idempotent)
end

-- Tells policy.on_attempt (a caller's trace) how an attempt went. The
-- path is the URL's without its scheme and host (a base_url's user and
-- password stay out); the hook's errors are its own.
local function tell(self, h, response, err, retrying)
    local hook = self.policy.on_attempt
    if not hook then
        return
    end
    local call, status = h.call, response.status
    local ok, problem = pcall(hook, {
        operation = h.operation,
        method = call.method,
        path = call.url:match("^%a+://[^/]*(/.*)$") or "/",
        status = status ~= 0 and status or nil,
        kind = err and err.kind or nil,
        ms = now_ms() - h.attempt_started,
        attempt = h.attempts,
        retry = retrying,
    })
    if not ok and errors.is_interrupt(problem) then
        error(problem, 0)
    end
end

-- The one place a finished transfer of `h` is settled: succeed, fail,
-- continue with the next request, or back off for another attempt.
local function settle(self, h, response)
    h.connects = h.connects + (response.connects or 0)
    local value, err, transient, next_call = engine.outcome(h.call, response)
    if next_call then
        tell(self, h, response, nil, false)
        h.call, h.attempts = next_call, 0
        return attempt(self, h, now_ms())
    end
    local policy = self.policy
    if transient and h.attempts < policy.max_attempts and not self.closed then
        local delay = retry.delay_ms(policy, h.attempts, response.retry_after)
        local now = now_ms()
        if delay and now + delay < h.deadline then
            tell(self, h, response, err, true)
            h.state, h.due, h.last_err = "backing_off", now + delay, err
            self.backing_off[#self.backing_off + 1] = h
            return
        end
    end
    tell(self, h, response, err, false)
    return finish(self, h, value, err)
end

-- A raise while settling (out of memory while decoding, say) ends that call
-- with an error instead of escaping: the other finished transfers are still
-- settled, and nobody waits forever for a handle that can no longer finish.
-- The interpreter's Ctrl-C ends the call as cancelled and goes on up.
-- The response reports a raise of its own as nil, message (no pcall of a
-- C function here: on LuaJIT, code after it in a pcall'd function would
-- leave its trace on every call, through the pcall).
local function collect(self, h, req)
    self.in_flight[req] = nil
    h.request = nil
    local spare = self.spare_response
    self.spare_response = false
    local response, problem = req:response(h.call.check, spare or nil)
    local ok = response ~= nil
    if ok then
        ok, problem = pcall(settle, self, h, response)
    end
    if spare then -- filled, or partly filled before a raise
        empty(spare)
        self.spare_response = spare
    end
    if ok then
        return
    end
    local interrupted = errors.is_interrupt(problem)
    if h.state == "running" and h.request == nil then
        pcall(req.close, req)
        finish(self, h, nil, errors.new(interrupted and "cancelled" or "decode", {
            message = interrupted and "interrupted" or
                "could not read the response: " .. tostring(problem),
        }))
    end
    if interrupted then
        error(problem, 0)
    end
end

-- Whether settling a response of `size` bytes now would overrun the
-- budget: its time is spent, or the response's expected cost (its size at
-- the rate settling has cost so far, the collector's share included) does
-- not fit in what is left. The first response of a budget always goes.
local function over_budget(self, budget, size)
    if budget.settled == 0 then
        return false
    end
    local now = now_ms()
    return now >= budget.ends or (size ~= nil and now + size * self.ms_per_byte > budget.ends)
end

-- Settles one arrived request within a budget, learning what a byte costs.
-- A sample is capped at twice the estimate: a decode that paid for a
-- collection cycle says nothing of the next one, and an estimate swollen by
-- it would let every later poll settle a single response.
local function settle_within(self, budget, h, req, size)
    local t = now_ms()
    collect(self, h, req)
    if size and size > 4096 then -- small answers are mostly fixed cost
        local estimate = self.ms_per_byte
        local rate = math.min((now_ms() - t) / size, 2 * estimate)
        self.ms_per_byte = estimate * 0.75 + rate * 0.25
    end
    budget.settled = budget.settled + 1
end

-- Transfers that finished are settled (decoded) in arrival order. A
-- budget ({ ends = ms, settled = n }, from poll's max_ms) stops settling
-- once it is spent, after at least one: the rest wait in self.arrived,
-- ahead of what arrives later, and timer_ms() says 0 so a reactor host
-- comes back for them.
local function settle_arrived(self, budget)
    local arrived, in_flight = self.arrived, self.in_flight
    local n, i = #arrived, 1
    while i <= n do
        local req = arrived[i]
        local h = in_flight[req]
        if h and budget then
            local size = req.size and req:size()
            if over_budget(self, budget, size) then
                break
            end
            i = i + 1
            settle_within(self, budget, h, req, size)
        else
            i = i + 1
            if h then
                collect(self, h, req)
            end
        end
    end
    -- Keep what is left, in place (a settle may have appended more).
    local total = #arrived
    for j = i, total do
        arrived[j - i + 1] = arrived[j]
    end
    for j = total - i + 2, total do
        arrived[j] = nil
    end
end

-- Tells the owner of `h` (a walk) that its answer is in, before it is
-- settled: the walk can put its next page on the wire while this one is
-- decoded.
local function announce(self, req)
    local h = self.in_flight[req]
    local hook = h and h.on_arrival
    if hook then
        h.on_arrival = nil
        hook(h)
    end
end

local function collect_all(self, done, budget)
    if done[1] == nil then
        return
    end
    local arrived = self.arrived
    for i = 1, #done do
        arrived[#arrived + 1] = done[i]
        announce(self, done[i])
    end
    settle_arrived(self, budget)
end

-- Starts the attempts whose backoff is over; returns ms to the next one.
local function start_due(self)
    local list = self.backing_off
    if list[1] == nil then
        return nil
    end
    local now = now_ms()
    local next_due
    local keep = {}
    for i = 1, #list do
        local h = list[i]
        if h.state == "backing_off" then
            if h.due <= now then
                attempt(self, h, now)
            else
                keep[#keep + 1] = h
                if not next_due or h.due < next_due then
                    next_due = h.due
                end
            end
        end
    end
    self.backing_off = keep
    return next_due and next_due - now
end

-- One turn: start due retries, let the transports work for at most
-- timeout_ms, settle what finished (within budget, when given).
function Engine:drive(timeout_ms, budget)
    local until_due = start_due(self)
    if until_due and until_due < timeout_ms then
        timeout_ms = until_due
    end
    if self.arrived[1] ~= nil then
        settle_arrived(self, budget)
        timeout_ms = 0 -- there is news, or work left for the next turn
    end
    local transports = self.transports
    if transports[2] == nil then
        collect_all(self, transports[1].transport:perform(max(0, floor(timeout_ms))), budget)
    else
        -- Wait on the last usable one; the others only turn over.
        local here
        for i = #transports, 1, -1 do
            if transports[i].usable() then
                if here then
                    local tr = transports[i].transport
                    if tr:pending() > 0 then
                        collect_all(self, tr:perform(0), budget)
                    end
                else
                    here = transports[i].transport
                end
            end
        end
        collect_all(self, here:perform(max(0, floor(timeout_ms))), budget)
    end
    start_due(self)
end

-- Hands out the host's finished handles that nobody has taken yet.
local function take_finished(self)
    local out = {}
    for _, h in ipairs(self.finished) do
        if not h.taken then
            h.taken = true
            out[#out + 1] = h
        end
    end
    self.finished = {}
    return out
end

-- A settling budget of max_ms from now, or nil for none.
local function budget_of(max_ms)
    return max_ms and { ends = now_ms() + max_ms, settled = 0 } or nil
end

-- The host's handles that finished since the last poll. When none has,
-- drives the transfers until one finishes or timeout_ms has passed (0 never
-- blocks): activity that finishes nothing of the host's (a walk's page) does
-- not cut the wait short, so a host can sleep out its frame in poll. With
-- max_ms, settling stops once that much time is spent in it (after at
-- least one response); the rest is settled by the next poll.
function Engine:poll(timeout_ms, max_ms)
    local deadline = now_ms() + timeout_ms
    local budget = budget_of(max_ms)
    repeat
        self:drive(self.finished[1] ~= nil and 0 or deadline - now_ms(), budget)
        if budget and budget.settled > 0 and self.arrived[1] ~= nil then
            break -- the budget is spent: the rest is the next poll's
        end
    until self.finished[1] ~= nil or self.closed or now_ms() >= deadline
    return take_finished(self)
end

-- How long a blocking wait for `h` may take, from `now`: past its deadline
-- by a little, so the transport's own timeout, not the wait, ends a
-- stalled attempt.
local function wait_limit_ms(h, now)
    local timeout = h.deadline - now + 50
    return timeout < 1 and 1 or timeout
end

-- Blocks until `h` is done and returns its result. Other transfers that
-- finish meanwhile stay in the transport, undecoded, until a drive or a
-- wait asks for them: the caller gets `h` first and can start more work (a
-- walk its next page) before paying for theirs. `now`, when given, is the
-- clock as the caller just read it (a blocking call's start).
function Engine:wait(h, now)
    while h.state ~= "done" do
        local req = h.request
        now = now or now_ms()
        if req and self.backing_off[1] == nil then
            -- Nothing to start meanwhile: the transport waits for this one.
            if h.call.transport:wait(req, wait_limit_ms(h, now)) and self.in_flight[req] == h then
                announce(self, req)
                collect(self, h, req)
            end
        else
            self:drive(wait_limit_ms(h, now))
        end
        now = nil
    end
    if h.sink == nil and not h.taken then
        -- The host has it now: a later poll does not hand it out again.
        h.taken = true
        remove_from(self.finished, h)
    end
    return h:result()
end

-- A blocking call. Its handle never leaves here (no queue, and no caller
-- holds it), so once the call is done the table is kept for the engine's
-- next blocking call: a table less per call for the collector.
function Engine:run(call)
    local h = self.spare or new_handle()
    self.spare = nil
    local now = now_ms()
    local value, err = self:wait(begin(self, h, call, false, now), now)
    h.call, h.value, h.err, h.last_err = nil, nil, nil, nil -- it holds nothing of the call
    self.spare = h
    return value, err
end

-- Blocks until the current attempt of `h` has its response, without turning
-- it into a result: the next wait() or drive() does that. A caller can put
-- more work on the wire first (a walk its next page) and pay for the decode
-- while that travels. Returns at once when `h` has no transfer running.
local function await_response(h)
    local req = h.request -- set only while an attempt is running
    if req then
        h.call.transport:wait(req, wait_limit_ms(h, now_ms()), true)
    end
end

function Engine:pending()
    local n = #self.backing_off
    for _ in pairs(self.in_flight) do
        n = n + 1
    end
    return n
end

-- For hosts with their own reactor: the next timeout is the transport's or
-- the next retry's, whichever comes first.
function Engine:timer_ms()
    if self.arrived[1] ~= nil or self.finished[1] ~= nil then
        return 0 -- settled work or work to settle: come back at once
    end
    local t = self.reactor and self.reactor:timer_ms() or -1
    local now = now_ms()
    for _, h in ipairs(self.backing_off) do
        local left = max(0, math.ceil(h.due - now))
        if t < 0 or left < t then
            t = left
        end
    end
    return t
end

function Engine:socket_changes()
    return self.reactor and self.reactor:socket_changes() or {}
end

function Engine:socket_action(fd, events, max_ms)
    local budget = budget_of(max_ms)
    start_due(self)
    settle_arrived(self, budget)
    if self.reactor then
        collect_all(self, self.reactor:socket_action(fd, events), budget)
    end
    start_due(self)
    return take_finished(self)
end

function Engine:cancel(h)
    if h.state == "done" then
        return
    end
    if h.request then
        self.in_flight[h.request] = nil
        h.request:close()
    elseif h.state == "backing_off" then
        remove_from(self.backing_off, h)
    end
    finish(self, h, nil, cancelled("cancelled by the caller"))
end

-- Ends every call and the transport. Safe from a finalizer at any point of
-- another engine call: what it leaves (done handles, an inert transport)
-- ends every loop above.
function Engine:close()
    if self.closed then
        return
    end
    self.closed = true
    local running = {}
    for req, h in pairs(self.in_flight) do
        running[#running + 1] = h
        self.in_flight[req] = nil
    end
    for _, h in ipairs(self.backing_off) do
        running[#running + 1] = h
    end
    self.backing_off = {}
    for _, h in ipairs(running) do
        if h.state ~= "done" then
            finish(self, h, nil, cancelled("client closed"))
        end
    end
    self.arrived = {}
    for _, t in ipairs(self.transports) do
        t.transport:close()
    end
    wake(self)
end

-- Request handles -------------------------------------------------------
-- The doc comments below are the handle's reference entry: LDoc shows them
-- in passage.users (config.ld merges this file into that module).

--- Request handles.
-- @module passage.users

--- A call started with `Client:start`: its result once it is done.
--
-- While the call runs, the client holds its handle, so a handle dropped
-- unread lets its call finish unobserved. `tostring(handle)` shows the
-- operation and the state, as `passage.request get_user (running)`.
-- @type Handle

--- The operation's name, as `Client:start` was given it.
-- @field operation

--- Once done, how many new connections the call's attempts opened (0: a
-- kept-alive connection served every attempt).
-- @field connects

--- Whether the call is done and `Handle:result` can be read.
--
-- A handle becomes done while the client works: in a `Client:poll`, a
-- `Handle:wait` or a `Client:socket_action`. `Handle:wait` drives the
-- other calls too, but leaves those that finish meanwhile to the next poll
-- (or their own wait), so `done` tells what the last poll or wait saw.
-- @treturn bool true once the call has its result
function Handle:done()
    return self.state == "done"
end

--- The call's result, exactly as the blocking method returns it.
-- @treturn[1] any the value
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
-- @raise when the call is not done yet
function Handle:result()
    if self.state ~= "done" then
        error("passage.users: request not finished yet (poll the client or call wait)", 2)
    end
    if self.err then
        return nil, self.err
    end
    return self.value
end

--- Blocks until the call is done and returns its result.
--
-- The other calls of the client move on meanwhile. A handle waited for is
-- not handed out again by a later `Client:poll`.
-- @treturn[1] any the value
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
function Handle:wait()
    return self.engine:wait(self)
end

--- Blocks until the current attempt has its response, without turning it
-- into a result (the next `Handle:wait` or `Client:poll` does that).
--
-- For pipelining: a caller can put its next request on the wire before
-- paying for this one's decoding, as `passage.paginator` does with
-- `in_flight`. Returns at once when no attempt is running (the call is
-- done, or waiting to be retried).
function Handle:await_response()
    return await_response(self)
end

--- Ends the call now: its result becomes `nil, err` with `err.kind ==
-- "cancelled"`. A started call's handle still comes out of the next
-- `Client:poll`. A call that is done keeps its result.
function Handle:cancel()
    self.engine:cancel(self)
end

--- Ends a call that is still running and forgets it: no `Client:poll`
-- returns it. A call that is done keeps its result. It is also the
-- handle's `__close`, for `local h <close> = client:start(...)` on Lua 5.4.
function Handle:close()
    if self.state ~= "done" then
        self.sink = false
        self.engine:cancel(self)
    end
end
Handle.__close = Handle.close

function Handle:__tostring()
    return string.format("passage.request %s (%s)", self.operation, self.state)
end

return engine
