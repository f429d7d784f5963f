-- What every loop adapter checks when a client is attached, and how it
-- hooks the client: one home for the options both adapters take
-- (on_finished, max_ms) and for the rule of one loop per client. Not in
-- the reference: the adapters' pages document the options.
local errors = require "passage.errors"
local users = require "passage.users"

local attach = {}

local OPTIONS = { on_finished = true, max_ms = true }

-- Checks the client and the options of `adapter` ("passage.loop.luv", ...),
-- raising an argument error in that adapter's name; returns the options
-- and the decoding budget for socket_action (nil for none).
function attach.check(adapter, client, opts)
    local argerror = errors.argument_in(adapter)
    if not users.is_client(client) then
        argerror("expected a passage.users client, got %s", type(client))
    end
    opts = opts or {}
    if type(opts) ~= "table" then
        argerror("expected an options table, got %s", type(opts))
    end
    for k in pairs(opts) do
        if not OPTIONS[k] then
            argerror("unknown option %s", tostring(k))
        end
    end
    if opts.on_finished ~= nil and type(opts.on_finished) ~= "function" then
        argerror("on_finished must be a function")
    end
    local budget = opts.max_ms ~= nil and { max_ms = opts.max_ms } or nil
    local ok, problem = pcall(users.check_budget, "attach", budget)
    if not ok then
        argerror("%s", errors.argument_message(problem) or tostring(problem))
    end
    if client.engine.wake then
        argerror("the client is attached to a loop already")
    end
    return opts, budget
end

-- Hooks `wake` to the client: called whenever a call starts or the client
-- closes outside the loop's own callbacks. nil unhooks.
function attach.on_wake(client, wake)
    client.engine.wake = wake
end

return attach
