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
--   finish      function(body, checked) -> value | nil, err [, next_call]
--               turns the decoded body of a 2xx response into the result; a
--               next_call continues the same handle with another request
--               (get_user_by_identifier)
--   check       optional core.checker(fields, path): run by the decoder;
--               `checked` is true when every value at its path passed
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
-- redact(err): takes the client's secret out of the server's texts in err
-- (errors.redactor).
function engine.new(transport, policy, redact)
    return setmetatable({
        transport = transport,
        policy = policy,
        redact = redact,
        in_flight = {},  -- core request -> handle
        backing_off = {}, -- handles waiting for their next attempt
        finished = {},   -- handles done but not yet returned by poll
    }, Engine)
end

-- Removes `h` from a list of handles; searched from the end, where the
-- handle of interest almost always is.
local function remove_from(list, h)
    for i = #list, 1, -1 do
        if list[i] == h then
            table.remove(list, i)
            return
        end
    end
end

local function finish(self, h, value, err)
    h.state = "done"
    h.value, h.err = value, err
    if err then
        err.attempts = err.attempts or h.attempts
        err.operation = err.operation or h.call.operation
        self.redact(err)
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
    -- start() rounds the timeout up to whole milliseconds itself.
    local req = self.transport:start(call.method, call.url, call.headers, call.body, remaining)
    if not req then -- the client was closed meanwhile
        return finish(self, h, nil, errors.new("cancelled", { message = "client closed" }))
    end
    h.request = req
    self.in_flight[req] = h
end

local function new_handle(self, call, now)
    -- Every field a handle can get is named here, the nil ones too: the
    -- constructor then sizes the table once instead of growing it later.
    return setmetatable({
        engine = self,
        call = call,
        operation = call.operation,
        attempts = 0,
        deadline = now + self.policy.timeout_ms,
        state = "running",
        request = nil,
        value = nil,
        err = nil,
        taken = nil,
        due = nil,
        last_err = nil,
    }, Handle)
end

function Engine:start(call)
    local now = now_ms()
    local h = new_handle(self, call, now)
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

local function success(self, h, status, body, checked)
    local value, err, next_call = h.call.finish(body, checked)
    if next_call then
        h.call = next_call
        h.attempts = 0
        return attempt(self, h, now_ms())
    end
    if err then
        err.status = err.status or status
    end
    return finish(self, h, value, err)
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
        local value, err, next_call = call.finish(response.body)
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
    -- New connections opened by this call's attempts (0: all reused one).
    local status, body, connects, checked = req:result(h.call.check)
    if status then
        h.request = nil
        h.connects = (h.connects or 0) + connects
        return success(self, h, status, body, checked)
    end
    local response = req:response()
    req:close()
    h.request = nil
    h.connects = (h.connects or 0) + (response.connects or 0)
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

-- A raise while turning one response into a result (out of memory while
-- decoding, say) ends that call with an error instead of escaping: the
-- other finished transfers in `done` are still completed, and nobody waits
-- forever for a handle that can no longer finish.
local function collect_one(self, h, req)
    self.in_flight[req] = nil
    local ok, problem = pcall(complete, self, h, req)
    if not ok and h.state == "running" and (h.request == nil or h.request == req) then
        h.request = nil
        pcall(req.close, req)
        finish(self, h, nil, errors.new("decode", {
            message = "could not read the response: " .. tostring(problem),
        }))
    end
end

local function collect(self, done)
    for i = 1, #done do
        local req = done[i]
        local h = self.in_flight[req]
        if h then
            collect_one(self, h, req)
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

-- Hands out the finished handles nobody has taken yet.
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

-- The handles that finished since the last poll. When none has, drives the
-- transfers until one finishes or timeout_ms has passed (0 never blocks):
-- socket activity that finishes nothing does not cut the wait short, so a
-- host can sleep out the rest of its frame in poll.
function Engine:poll(timeout_ms)
    local deadline = now_ms() + (timeout_ms or 0)
    repeat
        -- Finished handles already waiting are news enough: don't block.
        turn(self, self.finished[1] ~= nil and 0 or deadline - now_ms())
    until self.finished[1] ~= nil or now_ms() >= deadline
    return take_finished(self)
end

-- How long a blocking wait for `h` may take: past its deadline by a little,
-- so libcurl's own timeout, not the wait, ends a stalled attempt.
local function wait_limit_ms(h)
    local timeout = h.deadline - now_ms() + 50
    return timeout < 1 and 1 or timeout
end

-- Blocks until `h` is done. Other transfers that finish meanwhile stay
-- in the transport, undecoded, until a poll or a wait asks for them: the
-- caller gets `h` first and can start more work (a walk its next page)
-- before paying for theirs.
function Engine:wait(h)
    local transport = self.transport
    while h.state ~= "done" do
        local timeout = wait_limit_ms(h)
        local req = h.request
        if req and self.backing_off[1] == nil then
            -- Nothing to start meanwhile: the transport blocks in C until
            -- this request is done.
            local done = transport:wait(req, timeout)
            if done and self.in_flight[req] == h then
                collect_one(self, h, req)
            end
        else
            turn(self, timeout)
        end
    end
    h.taken = true
    -- Blocking callers never poll: drop `h` from the queue so it cannot grow.
    remove_from(self.finished, h)
    return h:result()
end

-- Blocks until the current attempt of `h` has its response, without turning
-- it into a result: the next wait() or poll() does that. A caller can put
-- more work on the wire first (a walk its next page) and pay for the decode
-- while that travels. Returns at once when `h` has no transfer running.
function Engine:await_response(h)
    local req = h.request -- set only while an attempt is running
    if req then
        self.transport:wait(req, wait_limit_ms(h), true)
    end
end

-- The common end of a blocking call's first attempt: a 2xx JSON answer
-- turned into its result. status is nil for anything else.
local function quick_result(req, call)
    local status, body, _, checked = req:result(call.check)
    if not status then
        return nil
    end
    return status, call.finish(body, checked)
end

-- A blocking call: what wait(start(call)) returns, without a handle in the
-- common case (nothing else to start meanwhile, one attempt, a 2xx JSON
-- answer). Anything else goes on with a handle, exactly as wait() would.
function Engine:run(call)
    if self.backing_off[1] ~= nil then
        return self:wait(self:start(call))
    end
    local now = now_ms()
    local policy = self.policy
    local transport = self.transport
    local remaining = policy.timeout_ms
    local limit = policy.attempt_timeout_ms
    if limit and limit < remaining then
        remaining = limit
    end
    local req = transport:start(call.method, call.url, call.headers, call.body, remaining)
    if not req then
        return self:wait(self:start(call)) -- closed meanwhile: ends as cancelled
    end
    local done = transport:wait(req, policy.timeout_ms + 50)
    local ok, status, value, err, next_call
    if done then
        ok, status, value, err, next_call = pcall(quick_result, req, call)
    end
    local h
    if not (ok and status and not next_call) then
        -- As if start() had made this attempt.
        h = new_handle(self, call, now)
        h.attempts = 1
        h.request = req
        if not done then
            self.in_flight[req] = h
        elseif not ok then
            -- As collect() does when turning a response into a result raises.
            h.request = nil
            pcall(req.close, req)
            finish(self, h, nil, errors.new("decode", {
                message = "could not read the response: " .. tostring(status),
            }))
        elseif not status then
            collect_one(self, h, req)
        else
            h.request = nil
            h.call = next_call
            h.attempts = 0
            attempt(self, h, now_ms())
        end
    end
    if h then
        return self:wait(h)
    end
    if err then
        err.status = err.status or status
        err.attempts = err.attempts or 1
        err.operation = err.operation or call.operation
        return nil, self.redact(err)
    end
    return value
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
    -- Not poll(): that drives the transport with perform(), which would drop
    -- the socket changes the host has yet to read.
    return take_finished(self)
end

function Engine:cancel(h)
    if h.state == "done" then
        return
    end
    if h.request then
        self.in_flight[h.request] = nil
        h.request:close()
        h.request = nil
    elseif h.state == "backing_off" then
        -- Waiting for its next attempt: no longer pending.
        remove_from(self.backing_off, h)
    end
    finish(self, h, nil, errors.new("cancelled", { message = "cancelled by the caller" }))
end

-- Cancels `h` and forgets it: it will not show up in a later poll. For
-- internal prefetches whose results nobody will read.
function Engine:discard(h)
    self:cancel(h)
    h.taken = true
    remove_from(self.finished, h)
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

-- close (and __close, for `local h <close> = client:start(...)`) ends a
-- call that is still running and forgets it; a finished one keeps its
-- result. While running, a handle is held by its client, so there is no
-- __gc to need: dropping a handle lets the call finish unobserved.
function Handle:close()
    if self.state ~= "done" then
        self.engine:discard(self)
    end
end
Handle.__close = Handle.close

function Handle:__tostring()
    return string.format("passage.request %s (%s)", self.operation, self.state)
end

return engine
