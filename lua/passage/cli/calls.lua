--- Calls and their result lines: what a call's result says as a line of
-- JSON fields, what the library makes of a call without sending it
-- (`client:check`: a bad one gets its own failed line, kind "input", with
-- the library's message), and one call that a signal can stop.
-- @module passage.cli.calls
local operations = require "passage.operations"
local signals = require "passage.cli.signals"

local calls = {}

local unpack = table.unpack or unpack -- luacheck: globals unpack

--- The result line of a call: `ok`, `operation` and the user `id` (and
-- `user_status`, for calls that return a user), or the error's `kind`,
-- `status` (HTTP), `code` and `message`.
-- @tparam table call the call (`{ operation, app_id, ... }`)
-- @tparam table result `{ value = v }` or `{ err = e }`, as `client:bulk`
--   returns them
-- @treturn table the fields of the line
function calls.result_line(call, result)
    local line = { operation = call[1] }
    local value, err = result.value, result.err
    -- The user's id, when the call names one (passage.operations says
    -- which argument is what: an identifier is not an id).
    local op = operations[call[1]]
    if op and op.args[2] == "user_id" and type(call[3]) == "string" then
        line.id = call[3]
    end
    if call[1] == "delete_user_device" then
        line.device_id = call[4]
    end
    if err == nil then
        line.ok = true
        if type(value) == "table" then
            line.id = value.id
            line.user_status = value.status
        end
        return line
    end
    line.ok = false
    line.kind = err.kind
    line.status = err.status
    line.code = err.code
    line.message = err.message
    return line
end

--- An input failure's result line.
-- @tparam string message what is wrong
-- @treturn table
function calls.input_error(message)
    return { ok = false, kind = "input", message = message }
end

--- What the library makes of a call, without sending it: the request it
-- would send (`client:check`), or nil and its message for a call it refuses.
-- @param client a `passage.users` client
-- @tparam table call `{ operation, args... }`
-- @treturn ?table `{ operation, method, url, body }`
-- @treturn ?string the library's message
function calls.check(client, call)
    local ok, request = pcall(client.check, client, unpack(call))
    if ok then
        return request
    end
    signals.pass_interrupt(request)
    return nil, (tostring(request):gsub("^.-passage%.users: ", ""))
end

--- The library's verdict on a number of calls in flight (`--in-flight`):
-- nil when it takes it, else its message.
-- @param client a `passage.users` client
-- @param n the value given
-- @treturn ?string
function calls.in_flight_problem(client, n)
    local ok, err = pcall(client.bulk, client, {}, { max_in_flight = n })
    if ok then
        return nil
    end
    return "--in-flight: " .. tostring(err):gsub("^.-passage%.users: bulk: ", "")
end

--- One call, as the client's method makes it, but started and polled so
-- that a SIGINT or SIGTERM ends the wait at once (the call is cancelled).
-- @param client a `passage.users` client
-- @tparam string operation
-- @param ... its arguments
-- @return the value, or nil and the error (`kind` "cancelled" when a
--   signal stopped it)
function calls.one(client, operation, ...)
    signals.install()
    local handle = client:start(operation, ...)
    while not handle:done() do
        client:poll(100)
        if not handle:done() and signals.count() > 0 then
            handle:cancel()
            client:poll(0)
        end
    end
    return handle:result()
end

return calls
