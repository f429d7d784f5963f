-- The request engine of a client: runs calls on its passage.core transport
-- (one libcurl multi handle), with a deadline per call and retries, and
-- hands back request handles. Blocking calls are a start and a wait on the
-- same path, so the two can never behave differently.
--
-- A call is a table made by passage.users:
--   operation   "get_user", ...            (for errors)
--   method, url, headers, body             (what to send; headers may be a
--                                           function returning the array, so
--                                           a dumped call shows no secret)
--   idempotent  true when a retry is safe
--   finish      function(response) -> value | nil, err [, next_call]
--               turns a 2xx response into the result; a next_call continues
--               the same handle with another request (get_user_by_identifier)
local core = require "passage.core"
local errors = require "passage.errors"
local retry = require "passage.retry"

local now_ms = core.now_ms

local engine = {}

local Engine = {}
Engine.__index = Engine

local Handle = {}
Handle.__index = Handle
engine.Handle = Handle

-- policy: timeout_ms, attempt_timeout_ms (or nil), max_attempts,
-- retry_base_delay_ms, retry_max_delay_ms, retry_after_max_ms
function engine.new(transport, policy)
    return setmetatable({
        transport = transport,
        policy = policy,
        in_flight = {},  -- core request -> handle
        backing_off = {}, -- handles waiting for their next attempt
        finished = {},   -- handles done but not yet returned by poll
    }, Engine)
end

local function finish(self, h, value, err)
    h.state = "done"
    h.value, h.err = value, err
    if err then
        err.attempts = err.attempts or h.attempts
        err.operation = err.operation or h.call.operation
    end
    self.finished[#self.finished + 1] = h
end

local function attempt(self, h, now)
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
    h.attempts = h.attempts + 1
    h.state = "running"
    local headers = call.headers
    if type(headers) == "function" then
        headers = headers()
    end
    local req = self.transport:start(call.method, call.url, headers, call.body,
        math.ceil(remaining))
    h.request = req
    self.in_flight[req] = h
end

function Engine:start(call)
    local now = now_ms()
    local h = setmetatable({
        engine = self,
        call = call,
        operation = call.operation,
        attempts = 0,
        deadline = now + self.policy.timeout_ms,
    }, Handle)
    attempt(self, h, now)
    return h
end

local function failure(response)
    if response.kind then
        return errors.new(response.kind, {
            message = response.message,
            status = response.status ~= 0 and response.status or nil,
        })
    end
    return errors.from_http(response)
end

-- What one finished transfer means for `call`, with no I/O, clock or policy:
--   value                     success
--   nil, err, transient       failure; transient = worth another attempt
--                             (if the policy and the deadline allow it)
--   nil, nil, false, next     the call continues with the request `next`
-- `response` is passage.core's request:response() table.
function engine.outcome(call, response)
    local status = response.status
    if not response.kind and status >= 200 and status < 300 then
        if response.decode_error and response.body_size > 0 then
            return nil, errors.new("decode", {
                status = status,
                message = "response is not JSON: " .. response.decode_error,
                body = response.raw,
            }), false
        end
        local value, err, next_call = call.finish(response)
        if next_call then
            return nil, nil, false, next_call
        end
        if err then
            err.status = err.status or status
            return nil, err, false
        end
        return value
    end
    local err = failure(response)
    if response.retry_after then
        err.retry_after = retry.parse_retry_after(response.retry_after)
    end
    return nil, err, retry.is_transient(response, call.idempotent)
end

-- A transfer of `h` ended: succeed, fail, or schedule the next attempt.
local function complete(self, h, req)
    local response = req:response()
    req:close()
    h.request = nil
    local value, err, transient, next_call = engine.outcome(h.call, response)
    if next_call then
        h.call = next_call
        h.attempts = 0
        return attempt(self, h, now_ms())
    end
    local policy = self.policy
    if transient and h.attempts < policy.max_attempts then
        local delay = retry.delay_ms(policy, h.attempts, response.retry_after)
        local now = now_ms()
        if delay and now + delay < h.deadline then
            h.state = "backing_off"
            h.due = now + delay
            h.last_err = err
            self.backing_off[#self.backing_off + 1] = h
            return
        end
    end
    return finish(self, h, value, err)
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

local function collect(self, done)
    for i = 1, #done do
        local req = done[i]
        local h = self.in_flight[req]
        if h then
            self.in_flight[req] = nil
            complete(self, h, req)
        end
    end
end

-- One turn: start due retries, let libcurl work for at most timeout_ms.
local function turn(self, timeout_ms)
    local until_due = start_due(self)
    if until_due and until_due < timeout_ms then
        timeout_ms = until_due
    end
    collect(self, self.transport:perform(math.max(0, math.floor(timeout_ms))))
    start_due(self)
end

-- The handles that finished since the last poll (waits up to timeout_ms for
-- one when none has; 0 never blocks).
function Engine:poll(timeout_ms)
    -- Finished handles already waiting are news enough: don't block.
    turn(self, self.finished[1] ~= nil and 0 or timeout_ms or 0)
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

-- Blocks until `h` is done. Other handles that finish meanwhile stay queued
-- for the next poll.
function Engine:wait(h)
    while h.state ~= "done" do
        turn(self, math.max(1, h.deadline - now_ms() + 50))
    end
    h.taken = true
    -- Blocking callers never poll: drop `h` from the queue so it cannot grow.
    local list = self.finished
    for i = #list, 1, -1 do
        if list[i] == h then
            table.remove(list, i)
            break
        end
    end
    return h:result()
end

-- Gives a handle taken by poll back to the queue of the next poll.
function Engine:requeue(h)
    h.taken = nil
    self.finished[#self.finished + 1] = h
end

function Engine:pending()
    local n = #self.backing_off
    for _ in pairs(self.in_flight) do
        n = n + 1
    end
    return n
end

-- For hosts with their own reactor: the next timeout is libcurl's or the
-- next retry's, whichever comes first.
function Engine:timer_ms()
    local t = self.transport:timer_ms()
    local now = now_ms()
    for _, h in ipairs(self.backing_off) do
        local left = math.max(0, math.ceil(h.due - now))
        if t < 0 or left < t then
            t = left
        end
    end
    return t
end

function Engine:socket_action(fd, events)
    start_due(self)
    collect(self, self.transport:socket_action(fd, events))
    start_due(self)
    return self:poll(0)
end

function Engine:cancel(h)
    if h.state == "done" then
        return
    end
    if h.request then
        self.in_flight[h.request] = nil
        h.request:close()
        h.request = nil
    end
    finish(self, h, nil, errors.new("cancelled", { message = "cancelled by the caller" }))
end

-- Cancels `h` and forgets it: it will not show up in a later poll. For
-- internal prefetches whose results nobody will read.
function Engine:discard(h)
    self:cancel(h)
    h.taken = true
    local list = self.finished
    for i = #list, 1, -1 do
        if list[i] == h then
            table.remove(list, i)
            break
        end
    end
end

-- Ends every call still running; used when the client closes.
function Engine:cancel_all()
    for req, h in pairs(self.in_flight) do
        self.in_flight[req] = nil
        h.request = nil
        finish(self, h, nil, errors.new("cancelled", { message = "client closed" }))
    end
    for _, h in ipairs(self.backing_off) do
        if h.state ~= "done" then
            finish(self, h, nil, errors.new("cancelled", { message = "client closed" }))
        end
    end
    self.backing_off = {}
end

-- Request handles -------------------------------------------------------

function Handle:done()
    return self.state == "done"
end

-- The value, or nil, err, exactly as the blocking call returns them.
function Handle:result()
    if self.state ~= "done" then
        error("passage.users: request not finished yet (poll the client or call wait)", 2)
    end
    if self.err then
        return nil, self.err
    end
    return self.value
end

function Handle:wait()
    return self.engine:wait(self)
end

function Handle:cancel()
    self.engine:cancel(self)
end

function Handle:__tostring()
    return string.format("passage.request %s (%s)", self.operation, self.state)
end

return engine
