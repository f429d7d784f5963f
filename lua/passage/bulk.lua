-- Many calls with at most N in flight on one client, as a job that moves on
-- whenever the client is driven (poll, socket_action, an attached loop, or
-- a blocking wait): every result comes back in input order, and one
-- failure does not stop the rest. Retries and timeouts apply per call, as
-- for single calls. The job's handles finish into the job itself, so the
-- host's poll never sees them, and the host's own started calls that
-- finish meanwhile stay queued for its poll.
local errors = require "passage.errors"

local bulk = {}

local Job = {}
Job.__index = Job

-- Starts calls while there is room. Not re-entered: a call that ends at
-- once (a closed client) finishes inside start, and its sink only counts.
local function fill(job)
    if job.filling then
        return
    end
    job.filling = true
    local engine, calls = job.engine, job.calls
    while job.running < job.max_in_flight and job.next_call <= job.total and not job.stopped do
        local i = job.next_call
        job.next_call = i + 1
        job.running = job.running + 1
        job.starting = i -- a call that ends within start reaches the sink first
        local h = engine:start(calls[i], job.sink)
        if h.state ~= "done" then
            job.index_of[h] = i
        end
        calls[i] = false -- sent: the job no longer holds the request
    end
    job.filling = false
end

-- Tells opts.progress. A hook that raises stops the job: the calls still
-- running are cancelled and the hook's error is kept, to be raised as it
-- was by results().
local function report(job)
    local ok, problem = pcall(job.hook, job:progress())
    if not ok and job.hook_error == nil then
        job.hook_error = problem
        job:close()
    end
end

-- The sink of the job's handles (called by the engine; never raises).
local function finished(job, h)
    local i = job.index_of[h] or job.starting
    job.index_of[h] = nil
    job.got[i] = { value = h.value, err = h.err }
    job.running = job.running - 1
    job.done_n = job.done_n + 1
    if h.err then
        job.failed = job.failed + 1
    end
    if job.hook and not job.stopped then
        report(job)
    end
    fill(job)
end

-- `engine`: the client's request engine; `calls`: engine calls, already
-- checked. The first max_in_flight are on the wire when this returns.
function bulk.start(engine, calls, max_in_flight, progress)
    local job = setmetatable({
        engine = engine,
        calls = calls,
        total = #calls,
        max_in_flight = max_in_flight,
        hook = progress, -- opts.progress
        got = {}, -- results by index
        index_of = {}, -- handle -> index of its call
        next_call = 1,
        starting = nil, -- index of the call being started
        running = 0,
        done_n = 0,
        failed = 0,
        filling = false,
        stopped = false,
        hook_error = nil,
    }, Job)
    -- The engine holds the job through its handles' sink, so a job dropped
    -- by its caller still runs to its end, like a dropped handle.
    job.sink = function(h)
        finished(job, h)
    end
    fill(job)
    return job
end

--- Bulk jobs.
-- @module passage.users

--- A bulk run started with `Client:start_bulk`. It moves on whenever the
-- client is driven: `Client:poll`, `Client:socket_action`, an attached
-- loop (`passage.loop.luv`, `passage.loop.cqueues`), or a blocking wait.
-- @type Job

--- Whether every call has its result (or the job was closed).
-- @treturn bool true once `Job:results` can be read
function Job:done()
    return self.running == 0 and (self.stopped or self.next_call > self.total)
end

--- How far the job is.
-- @treturn table `{ done =, failed =, total = }`: calls finished so far,
-- how many of them failed, and the number of calls
function Job:progress()
    return { done = self.done_n, failed = self.failed, total = self.total }
end

--- The results in input order, once the job is done.
-- @treturn {table,...} `results[i]` for `calls[i]`: `{ value = v }` or
-- `{ err = e }` (a call the job never started, after `Job:close`, has
-- `err.kind == "cancelled"`); nil while the job runs
-- @raise the progress hook's error, as it was, when the hook raised
function Job:results()
    if self.hook_error ~= nil then
        error(self.hook_error, 0)
    end
    if not self:done() then
        return nil
    end
    return self.got
end

--- Stops the job: calls in flight are cancelled, calls not started are
-- never sent; each gets a `cancelled` err. The job is then done.
function Job:close()
    if self.stopped then
        return
    end
    self.stopped = true
    local running = {}
    for h in pairs(self.index_of) do
        running[#running + 1] = h
    end
    for _, h in ipairs(running) do
        h:cancel() -- finishes into the job: its result is "cancelled"
    end
    for i = self.next_call, self.total do
        self.got[i] = { err = errors.new("cancelled", { message = "the bulk job was closed" }) }
    end
    self.next_call = self.total + 1
end

--- Blocks until the job is done and returns `Job:results`.
-- @treturn {table,...} the results, as `Job:results` gives them
-- @raise the progress hook's error, as it was, when the hook raised
function Job:wait()
    while not self:done() do
        self.engine:drive(1000)
    end
    return self:results()
end

function Job:__tostring()
    return string.format("passage.bulk %d/%d done", self.done_n, self.total)
end

return bulk
