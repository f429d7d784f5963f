--- Many calls through `client:bulk`, with a result line for each.
--
-- The library checks every call of a bulk run before the first request and
-- refuses the whole run for one bad call; here such a call gets its own
-- failed result (kind "input", the library's message) and the others run.
-- @module passage.cli.calls
local calls = {}

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
    if type(call[3]) == "string" then
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

local function library_message(e)
    return (tostring(e):gsub("^.-passage%.users: bulk: call %d+: ", ""))
end

--- Runs `list` with at most `in_flight` calls at once.
-- @param client a `passage.users` client
-- @tparam {table,...} list calls, each `{ operation, args... }`
-- @tparam number in_flight
-- @tparam[opt] function progress called as `progress(done, failed)` as calls finish
-- @treturn {table,...} results in input order, `{ value = v }` or `{ err = e }`
--   or `{ input = message }` for a call the library refused
function calls.run(client, list, in_flight, progress)
    local results, pending, index = {}, {}, {}
    for i = 1, #list do
        pending[#pending + 1] = list[i]
        index[#index + 1] = i
    end
    local base_done, base_failed = 0, 0
    while pending[1] do
        local opts = { max_in_flight = in_flight }
        if progress then
            opts.progress = function(p)
                progress(base_done + p.done, base_failed + p.failed)
            end
        end
        local ok, got = pcall(client.bulk, client, pending, opts)
        if ok then
            for j, r in ipairs(got) do
                results[index[j]] = r
            end
            break
        end
        local bad = tonumber(tostring(got):match("passage%.users: bulk: call (%d+): "))
        if not bad then
            error(got, 0)
        end
        results[index[bad]] = { input = library_message(got) }
        table.remove(pending, bad)
        table.remove(index, bad)
        base_done, base_failed = base_done + 1, base_failed + 1
    end
    return results
end

return calls
