-- TCP ports on 127.0.0.1 for the connection faults of the specs.
local socket = require "socket"

local M = {}

-- A port where nothing listens: a connect is refused.
function M.closed()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

-- A port whose listener's accept queue is full, so further SYNs go
-- unanswered: a connect never completes. Returns the port and a function
-- that closes it all.
function M.unanswering()
    local l = assert(socket.bind("127.0.0.1", 0, 0))
    local _, port = l:getsockname()
    local fillers = {}
    for i = 1, 8 do
        local s = socket.tcp()
        s:settimeout(0.05)
        s:connect("127.0.0.1", port)
        fillers[i] = s
    end
    return tonumber(port), function()
        for _, s in ipairs(fillers) do
            s:close()
        end
        l:close()
    end
end

return M
