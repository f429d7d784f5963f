-- passage.cosocket.deadline: the clock and the failures of one exchange
-- (a request of passage.cosocket, in its light thread). Every wait on a
-- socket is bounded by the time left before the request's deadline, and
-- every failure is recorded on the request as a kind and a message.

local M = {}

local now_ms = require("passage.clock").now_ms

-- The longest socket timeout given to nginx (an exchange without a time
-- limit waits this long per operation).
local MAX_TIMER_MS = 2147483647

-- Ends req with a failure of `kind`. Returns false, for `return fail(...)`.
function M.fail(req, kind, message)
    req.kind = kind
    req.message = message
    return false
end
local fail = M.fail

function M.timeout_message(what, req)
    return "timed out " .. what .. " after " .. math.floor(now_ms() - req.started_ms + 0.5) .. " ms"
end
local timeout_message = M.timeout_message

-- The time left for the exchange, in whole milliseconds, at least 1 (and
-- at most what nginx's timers take); or nil when it is over.
function M.time_left(req)
    local left = req.deadline - now_ms()
    if left < 1 then
        return nil
    end
    return left < MAX_TIMER_MS and math.ceil(left) or MAX_TIMER_MS
end
local time_left = M.time_left

-- What a cosocket error means: kind and message.
function M.io_failure(req, err, what)
    if err == "timeout" then
        return fail(req, "timeout", timeout_message(what, req))
    end
    return fail(req, "network", what .. ": " .. tostring(err))
end

-- One read of whatever has arrived (up to `max` bytes), bounded by the time
-- left for the exchange. Returns data, or nil, err.
function M.read_some(sock, req, max)
    local left = time_left(req)
    if not left then
        return nil, "timeout"
    end
    sock:settimeout(left)
    return sock:receiveany(max)
end

return M
