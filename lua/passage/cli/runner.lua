--- Runs many calls, a few in flight at once, and writes each one's result
-- line as soon as it and every line before it are done.
--
-- Calls go through `client:start` and `client:poll`, so the command keeps
-- the hand between calls: it looks at the signals there. The first SIGINT
-- or SIGTERM stops taking new work and lets the calls in flight finish;
-- the second cancels them (each still gets its line, `kind` "cancelled").
-- Memory stays bounded: at most `WINDOW` entries are held between the
-- oldest unfinished one and the newest.
-- @module passage.cli.runner
local calls = require "passage.cli.calls"
local signals = require "passage.cli.signals"

local runner = {}

local unpack = table.unpack or unpack -- luacheck: globals unpack

local WINDOW = 4096
-- How long one poll waits at most: how soon a signal is seen.
local POLL_MS = 100
-- A poll made while waiting for input: short, so input is not held up.
local IDLE_POLL_MS = 20

local Runner = {}
Runner.__index = Runner

--- A new run.
-- @tparam table opts `client`; `in_flight` (calls at once); `next(running)`
--   returns the next entry, nil at the end, or false to wait for the calls
--   in flight first; `write(entry)` is called in input order once an entry
--   has its `result`; `flush()` after a series of writes; optional
--   `progress(done)`.
--   An entry is `{ call = {...} }` to run, or has its `result` (a result
--   line's fields) already. An entry with a `step`
--   function is a chain: `step(value, err)` of each call returns the next
--   call, or nil once it has set the entry's `result`.
-- @return the run, with `run()`, `idle()` and, after the run, `done`,
--   `stopped` (a signal stopped it) and `cancelled` (a second one came)
function runner.new(opts)
    return setmetatable({
        opts = opts, client = opts.client,
        queue = {}, head = 1, tail = 0,
        running = {}, nrunning = 0,
        done = 0, stopped = false, cancelled = false,
    }, Runner)
end

function Runner:start(entry)
    local ok, handle = pcall(self.client.start, self.client, unpack(entry.call))
    if not ok then
        signals.pass_interrupt(handle)
        entry.result = calls.input_error((tostring(handle):gsub("^.-passage%.users: ", "")))
        return
    end
    self.running[handle] = entry
    self.nrunning = self.nrunning + 1
end

-- Writes every entry at the head that has its result.
function Runner:drain()
    local queue, wrote = self.queue, false
    while self.head <= self.tail and queue[self.head].result do
        local entry = queue[self.head]
        queue[self.head] = nil
        self.head = self.head + 1
        self.opts.write(entry)
        self.done = self.done + 1
        wrote = true
    end
    if wrote then
        self.opts.flush()
        if self.opts.progress then
            self.opts.progress(self.done)
        end
    end
end

function Runner:collect(ms)
    for _, handle in ipairs(self.client:poll(ms)) do
        local entry = self.running[handle]
        if entry then
            self.running[handle] = nil
            self.nrunning = self.nrunning - 1
            local value, err = handle:result()
            -- A record of several calls (passage.cli.restore) goes on in
            -- its slot, unless a second signal cancelled the run.
            local next_call = entry.step and not self.cancelled and entry.step(value, err)
            if next_call then
                entry.call = next_call
                self:start(entry)
            elseif not entry.result then
                entry.result = calls.result_line(entry.call, { value = value, err = err })
            end
        end
    end
    self:drain()
end

-- Looks at the signals: the first stops, the second cancels.
function Runner:watch()
    local n = signals.count()
    if n >= 1 then
        self.stopped = true
    end
    if n >= 2 and not self.cancelled then
        self.cancelled = true
        for handle in pairs(self.running) do
            handle:cancel()
        end
    end
end

--- While the input keeps the command waiting: moves the calls in flight
-- on. Returns false when none is in flight (the wait may block).
-- @treturn bool
function Runner:idle()
    if self.nrunning == 0 then
        return false
    end
    self:watch()
    self:collect(IDLE_POLL_MS)
    return true
end

-- Takes entries and starts their calls while there is room; returns true
-- once the source is exhausted.
function Runner:fill()
    local in_flight = self.opts.in_flight
    while not self.stopped and self.nrunning < in_flight and self.tail - self.head + 1 < WINDOW do
        local entry = self.opts.next(self.nrunning)
        if entry == nil then
            return true
        elseif entry == false then
            return false
        end
        self.tail = self.tail + 1
        self.queue[self.tail] = entry
        if entry.call and not entry.result then
            self:start(entry)
        end
        self:drain()
        self:watch()
    end
    return false
end

--- Runs every entry; returns the run.
function Runner:run()
    local exhausted = false
    while true do
        self:watch()
        exhausted = exhausted or self:fill()
        self:watch() -- a signal may have ended a wait for input
        self:drain()
        if self.nrunning == 0 and (exhausted or self.stopped) then
            break
        end
        self:collect(self.nrunning > 0 and POLL_MS or 0)
    end
    self:drain()
    return self
end

return runner
