-- A host reactor on luasocket's socket.select that follows the protocol of
-- Client:socket_changes to the letter, and counts where the protocol would
-- have failed a real event loop:
--   lost       turns with calls pending but no socket to watch and no timer
--              (a host following the protocol would sleep forever)
--   dead_fds   "remove"s of a socket that was already closed (epoll would
--              answer EBADF; cqueues dies of it)
--   unknown    "remove"s of a socket never reported
-- It never hangs: such a turn waits `patience` seconds and acts on the timer.
local socket = require "socket"

local M = {}

-- Whether fd is an open descriptor of this process.
function M.fd_open(fd)
    local f, message = io.open("/proc/self/fd/" .. fd)
    if f then
        f:close()
        return true
    end
    -- A socket cannot be opened through /proc (ENXIO): it exists.
    return not message:find("No such file or directory", 1, true)
end

-- Runs client's calls until `finished()` is true; on_done(h) for each
-- started call's handle. Returns the counts above plus `turns`.
function M.run(client, finished, on_done, patience)
    patience = patience or 2
    local watched, counts = {}, { lost = 0, dead_fds = 0, unknown = 0, turns = 0 }
    local function apply_changes()
        for _, change in ipairs(client:socket_changes()) do
            local fd = change.fd
            if change.events == "remove" then
                if not watched[fd] then
                    counts.unknown = counts.unknown + 1
                elseif not M.fd_open(fd) then
                    counts.dead_fds = counts.dead_fds + 1
                end
                watched[fd] = nil
            else
                watched[fd] = { events = change.events, object = { getfd = function() return fd end,
                    fd = fd } }
            end
        end
    end
    local function act(fd, events)
        for _, h in ipairs(client:socket_action(fd, events)) do
            if on_done then
                on_done(h)
            end
        end
        apply_changes()
    end
    apply_changes()
    while not finished() do
        counts.turns = counts.turns + 1
        local readers, writers = {}, {}
        for _, w in pairs(watched) do
            if w.events ~= "out" then
                readers[#readers + 1] = w.object
            end
            if w.events ~= "in" then
                writers[#writers + 1] = w.object
            end
        end
        local timer = client:timer_ms()
        if timer < 0 and readers[1] == nil and writers[1] == nil then
            counts.lost = counts.lost + 1
            timer = patience * 1000
        end
        local readable, writable = socket.select(readers, writers, timer >= 0 and timer / 1000 or nil)
        local ready = {}
        for _, o in ipairs(readable) do
            ready[o.fd] = "in"
        end
        for _, o in ipairs(writable) do
            ready[o.fd] = ready[o.fd] and "inout" or "out"
        end
        local any = false
        for fd, events in pairs(ready) do
            if watched[fd] then -- not removed by an action of this turn
                any = true
                act(fd, events)
            end
        end
        if not any then
            act() -- the timer
        end
    end
    return counts
end

return M
