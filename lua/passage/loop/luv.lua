--- Drives a client from a luv (libuv) event loop.
--
-- After `attach`, the client's started calls, walks (`passage.paginator.start`)
-- and bulk jobs (`Client:start_bulk`) move on as the loop runs, with no
-- other host code: the adapter watches the client's sockets with `uv_poll`
-- handles and its timer with one `uv_timer`, following the protocol of
-- `Client:socket_changes`. Blocking calls still work on an attached client
-- (they wait outside the loop).
-- @module passage.loop.luv
-- @usage
-- local uv = require "luv"
-- local attached = require("passage.loop.luv").attach(client, {
--     on_finished = function(h) print(h.operation, h:result()) end,
-- })
-- client:start("get_user", app_id, user_id)
-- uv.run()

local uv = require "luv"
local errors = require "passage.errors"
local attach = require "passage.loop.attach"

local M = {}


local TO_UV = { ["in"] = "r", out = "w", inout = "rw" }
local FROM_UV = { r = "in", w = "out", rw = "inout" }

local Attached = {}
Attached.__index = Attached

local act

-- Applies the client's socket changes and re-arms the timer: after every
-- call into the client, as the protocol asks.
local function sync(self)
    if self.detached then
        return
    end
    local client, polls = self.client, self.polls
    for _, change in ipairs(client:socket_changes()) do
        local fd, poll = change.fd, polls[change.fd]
        if change.events == "remove" then
            if poll then
                polls[fd] = nil
                poll:stop() -- unregisters while the socket is still open
                poll:close()
            end
        else
            if not poll then
                poll = uv.new_poll(fd)
                polls[fd] = poll
            end
            poll:start(TO_UV[change.events], function(problem, events)
                act(self, fd, problem and "err" or FROM_UV[events] or "inout")
            end)
        end
    end
    if client.engine.closed then
        -- Every socket was reported removed and is unwatched now: let the
        -- transport close them (its next call), and let go of the loop.
        client:socket_changes()
        return self:detach()
    end
    local ms = client:timer_ms()
    if ms < 0 then
        self.timer:stop()
    else
        self.timer:start(ms, 0, self.on_timer)
    end
end

-- A ready socket (or the timer, with no fd): the client works on it.
function act(self, fd, events)
    local finished = self.client:socket_action(fd, events, self.budget)
    sync(self)
    local on_finished = self.on_finished
    if on_finished then
        for i = 1, #finished do
            on_finished(finished[i])
        end
    end
end

--- Attaches a client to luv's default loop.
-- @param client a `passage.users` client (libcurl's transport)
-- @tparam[opt] table opts
-- @tparam[opt] func opts.on_finished called with each started call's
-- `Handle` as it finishes (without it, read `Handle:done` yourself)
-- @tparam[opt] number opts.max_ms the decoding budget of each turn, as
-- `Client:poll` takes it
-- @treturn Attached the attachment, for `Attached:detach`
-- @raise a bad argument, or a client already attached to a loop
M.attach = errors.guard(function(client, opts)
    local checked, budget = attach.check("passage.loop.luv", client, opts)
    local self = setmetatable({
        client = client,
        polls = {}, -- fd -> uv_poll
        timer = uv.new_timer(),
        on_finished = checked.on_finished,
        budget = budget,
        detached = false,
    }, Attached)
    self.on_timer = function()
        act(self, nil, nil)
    end
    -- Calls started from outside the loop's callbacks (a script, a walk's
    -- next page) change the sockets and the timer: resync at once.
    attach.on_wake(client, function()
        sync(self)
    end)
    sync(self)
    return self
end)

--- An attachment made by `attach`.
-- @type Attached

--- Stops driving the client from the loop: its watchers are stopped and
-- closed, so the loop can end. The client still works with `Client:poll`
-- or blocking calls.
function Attached:detach()
    if self.detached then
        return
    end
    self.detached = true
    attach.on_wake(self.client, nil)
    for fd, poll in pairs(self.polls) do
        self.polls[fd] = nil
        poll:stop()
        poll:close()
    end
    self.timer:stop()
    self.timer:close()
end

return M
