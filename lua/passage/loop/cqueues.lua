--- Drives a client from a cqueues controller.
--
-- After `attach`, one thread of the controller drives the client: the
-- client's started calls, walks (`passage.paginator.start`) and bulk jobs
-- (`Client:start_bulk`) move on as the controller runs, with no other host
-- code. The thread polls the client's sockets and timer, following the
-- protocol of `Client:socket_changes`, and wakes at once when a call is
-- started from elsewhere. Blocking calls still work on an attached client
-- (they wait outside the controller).
-- @module passage.loop.cqueues
-- @usage
-- local cqueues = require "cqueues"
-- local cq = cqueues.new()
-- require("passage.loop.cqueues").attach(client, cq)
-- cq:wrap(function()
--     local h = client:start("get_user", app_id, user_id)
--     while not h:done() do cqueues.sleep(0.01) end
-- end)
-- assert(cq:loop())

local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local errors = require "passage.errors"
local attach = require "passage.loop.attach"

local M = {}

local argerror = errors.argument_in("passage.loop.cqueues")
local unpack = table.unpack or unpack -- luacheck: ignore 143

-- A socket as cqueues' polling protocol sees it.
local Watched = {}
Watched.__index = Watched

local TO_CQ = { ["in"] = "r", out = "w", inout = "rw" }

function Watched:pollfd()
    return self.fd
end

function Watched:events()
    return self.wanted
end

local Attached = {}
Attached.__index = Attached

-- Applies the client's socket changes to the watched set. A removed socket
-- drops out of the next poll, so the controller unregisters it while the
-- transport still keeps it open (it closes it at the next call).
local function apply_changes(self)
    local watched = self.watched
    for _, change in ipairs(self.client:socket_changes()) do
        if change.events == "remove" then
            watched[change.fd] = nil
        else
            watched[change.fd] = setmetatable({ fd = change.fd, wanted = TO_CQ[change.events] },
                Watched)
        end
    end
end

-- The polling set and its timeout (nil: none) for the next wait.
local function next_wait(self)
    local set = { self.wakeup }
    for _, w in pairs(self.watched) do
        set[#set + 1] = w
    end
    local ms = self.client:timer_ms()
    if ms >= 0 then
        set[#set + 1] = ms / 1000
    end
    return set
end

-- The driving thread: until detached or the client closes.
local function drive(self)
    local client = self.client
    while not self.detached do
        apply_changes(self)
        if client.engine.closed then
            break
        end
        local ready = { cqueues.poll(unpack(next_wait(self))) }
        if self.detached then
            break
        end
        local finished = {}
        local acted = false
        for _, obj in ipairs(ready) do
            if getmetatable(obj) == Watched and self.watched[obj.fd] == obj then
                acted = true
                -- cqueues tells ready, not for what: libcurl checks.
                for _, h in ipairs(client:socket_action(obj.fd, nil, self.budget)) do
                    finished[#finished + 1] = h
                end
            end
        end
        if not acted then -- the timer, or a wake-up: the timer action
            finished = client:socket_action(nil, nil, self.budget)
        end
        if self.on_finished then
            for i = 1, #finished do
                self.on_finished(finished[i])
            end
        end
    end
    -- The removes are read and dropped from the set: one more turn of the
    -- controller unregisters them, then the transport closes them at this
    -- call.
    self.watched = {}
    cqueues.sleep(0)
    client:socket_changes()
    self:detach()
end

-- The controller, checked here (the rest is passage.loop.attach's).
local function check_controller(cq)
    if not cqueues.type(cq) then
        argerror("expected a cqueues controller, got %s", type(cq))
    end
end

--- Attaches a client to a cqueues controller: a thread of `cq` drives it
-- from then on.
-- @param client a `passage.users` client (libcurl's transport)
-- @param cq the controller (`cqueues.new()`)
-- @tparam[opt] table opts
-- @tparam[opt] func opts.on_finished called with each started call's
-- `Handle` as it finishes (without it, read `Handle:done` yourself)
-- @tparam[opt] number opts.max_ms the decoding budget of each turn, as
-- `Client:poll` takes it
-- @treturn Attached the attachment, for `Attached:detach`
-- @raise a bad argument, or a client already attached to a loop
M.attach = errors.guard(function(client, cq, opts)
    local checked, budget = attach.check("passage.loop.cqueues", client, opts)
    check_controller(cq)
    local self = setmetatable({
        client = client,
        watched = {}, -- fd -> Watched
        wakeup = condition.new(),
        on_finished = checked.on_finished,
        budget = budget,
        detached = false,
    }, Attached)
    -- A call started outside the thread (a script, a walk's next page)
    -- changes the sockets and the timer: the thread polls again at once.
    attach.on_wake(client, function()
        self.wakeup:signal()
    end)
    cq:wrap(drive, self)
    return self
end)

--- An attachment made by `attach`.
-- @type Attached

--- Stops driving the client: the thread ends at its next turn. The client
-- still works with `Client:poll` or blocking calls.
function Attached:detach()
    if self.detached then
        return
    end
    self.detached = true
    attach.on_wake(self.client, nil)
    self.wakeup:signal()
end

return M
