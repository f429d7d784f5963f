-- passage.cosocket.threads: the light threads of passage.cosocket and the
-- lists of a transport. An exchange runs in a light thread spawned by the
-- coroutine that starts it (nginx ends a light thread with its parent, and
-- only the parent may wait for it or kill it); a request moves from in
-- flight (transport.requests) to finished (transport.finished) to handed
-- over, and whoever waits on a semaphore is woken as it settles.
local pool = require "passage.cosocket.pool"

local M = {}

local now_ms = require("passage.clock").now_ms
local running = coroutine.running
local huge = math.huge
local fail = require("passage.cosocket.deadline").fail
local give_place, OVERRUN_GRACE_MS = pool.give_place, pool.OVERRUN_GRACE_MS

-- ---- an exchange's thread ----------------------------------------------------------

-- Moves req from in flight to done; the finished list gets it unless it
-- was cancelled. Wakes whoever waits for it.
local function settle(self, req)
    if req.is_done then
        return
    end
    req.is_done = true
    self.requests[req] = nil
    self.n_inflight = self.n_inflight - 1
    if not req.cancelled then
        local f = self.finished
        f[#f + 1] = req
        self.n_finished = self.n_finished + 1
    end
    local sema = req.sema
    if sema then
        local waiting = sema:count()
        if waiting < 0 then
            sema:post(-waiting)
        end
    end
    sema = self.any_sema
    if sema then
        local waiting = sema:count()
        if waiting < 0 then
            sema:post(-waiting)
        end
    end
end

-- The light thread of a request. `wire` holds the request's bytes, the
-- Authorization header among them: an argument, so that it is reachable
-- from no table.
local function exchange(self, req, wire)
    local ok, err = pcall(pool.run, self, req, wire)
    give_place(req)
    if not ok then
        self.ngx.log(self.ngx.ERR, "passage.cosocket: exchange failed: ", tostring(err))
        fail(req, "network", "exchange failed: " .. tostring(err))
    end
    if req.cancelled then
        req.body = nil
    else
        settle(self, req)
    end
end

-- Puts req in flight and spawns its exchange. Raises (at `level`) when
-- nginx cannot spawn a light thread.
function M.spawn(self, req, wire, level)
    self.requests[req] = true
    self.n_inflight = self.n_inflight + 1
    if req.deadline + OVERRUN_GRACE_MS < self.next_expiry then
        self.next_expiry = req.deadline + OVERRUN_GRACE_MS
    end
    req.parent = running()
    local thread, err = self.ngx.thread.spawn(exchange, self, req, wire)
    if not thread then
        self.requests[req] = nil
        self.n_inflight = self.n_inflight - 1
        error("passage.cosocket: cannot start the exchange: " .. tostring(err), level + 1)
    end
    req.thread = thread
    return req
end

-- A request that failed before any I/O (an unusable URL), done at once.
function M.done_with(self, req, kind, message)
    fail(req, kind, message)
    req.is_done = true
    local f = self.finished
    f[#f + 1] = req
    self.n_finished = self.n_finished + 1
    return req
end

-- ---- waiting and handing over --------------------------------------------------------

-- In flight past its deadline and a grace: a light thread nginx ended
-- without a word (the request or timer that started it was over first,
-- with ngx.exit, say). Done, so that no one waits for it forever. Returns
-- how long a wait may last before the next one could be found.
local function sweep(self)
    local now = now_ms()
    if now >= self.next_expiry then
        local next_expiry = huge
        for req in pairs(self.requests) do
            local expiry = req.deadline + OVERRUN_GRACE_MS
            if expiry <= now then
                req.kind = "cancelled"
                req.message = "nginx ended the exchange: the request or timer that started it was over"
                give_place(req)
                settle(self, req)
            elseif expiry < next_expiry then
                next_expiry = expiry
            end
        end
        self.next_expiry = next_expiry
    end
    return self.next_expiry - now
end

-- Waits on `sema` (posted as exchanges finish) until `req` is done (with
-- no req: until any request finished, or none is in flight) or timeout_ms
-- has passed, waking in time for sweep() to find an exchange nginx ended.
function M.wait_until(self, sema, timeout_ms, req)
    local deadline = now_ms() + timeout_ms
    while true do
        local until_sweep = sweep(self)
        local left = deadline - now_ms()
        local done
        if req then
            done = req.is_done
        else
            done = self.finished[1] ~= nil or self.n_inflight == 0
        end
        if done or left <= 0 then
            return
        end
        local ms = left < until_sweep and left or until_sweep
        sema:wait((ms > 1 and ms or 1) / 1000)
    end
end

-- Lets the light thread of req go, when this coroutine is the one that
-- spawned it: nginx keeps a finished thread until its parent waits for it,
-- kills it or ends. Killing one that still runs (an exchange cancelled from
-- another coroutine) ends it, and nginx closes its connection.
function M.reap(self, req)
    local thread = req.thread
    if thread and req.parent == running() then
        req.thread = nil
        return self.ngx.thread.kill(thread) == 1
    end
    return false
end

-- Takes req off the finished list (handed over).
function M.hand_over(self, req)
    if req.handed or req.cancelled or not req.is_done then
        return
    end
    req.handed = true
    self.n_finished = self.n_finished - 1
    local f = self.finished
    for i = #f, 1, -1 do
        if f[i] == req then
            table.remove(f, i)
            break
        end
    end
end

-- The finished requests not handed over yet, handed over now.
function M.take_finished(self)
    local f = self.finished
    if f[1] == nil then
        return {}
    end
    self.finished = {}
    self.n_finished = 0
    local me = running()
    for i = 1, #f do
        local req = f[i]
        req.handed = true
        if req.thread and req.parent == me then
            M.reap(self, req)
        end
    end
    return f
end

-- Ends req early: done, kind "cancelled", off every list.
function M.cancel(self, req, message)
    if req.is_done then
        return
    end
    req.cancelled = true
    req.kind = "cancelled"
    req.message = message
    req.body = nil
    if M.reap(self, req) then -- ended the exchange now (this coroutine may)
        give_place(req)
    end
    settle(self, req)
end

return M
