-- Many calls with at most N in flight on one client; every result comes
-- back in input order, and one failure does not stop the rest. Retries and
-- timeouts apply per call, as for single calls.
local bulk = {}

-- `engine`: the client's request engine; `calls`: engine calls, already
-- checked; returns results[i] = { value = v } or { err = e }. Its handles
-- finish into a list of its own, so the host's poll never sees them, and
-- the host's own handles that finish meanwhile stay queued for its poll.
-- `progress`, when given, is called with { done, failed, total } after each
-- turn that finished calls; if it raises, the calls still running are
-- cancelled and its error goes on to the caller as it was.
function bulk.run(engine, calls, max_in_flight, progress)
    local results = {}
    local index_of = {}
    local finished = {}
    local next_call, in_flight, total = 1, 0, #calls
    local done, failed = 0, 0
    while next_call <= total or in_flight > 0 do
        while in_flight < max_in_flight and next_call <= total do
            index_of[engine:start(calls[next_call], finished)] = next_call
            next_call = next_call + 1
            in_flight = in_flight + 1
        end
        if finished[1] == nil then
            engine:drive(1000)
        end
        local n = #finished
        for i = 1, n do
            local h = finished[i]
            results[index_of[h]] = { value = h.value, err = h.err }
            index_of[h] = nil
            in_flight = in_flight - 1
            failed = failed + (h.err and 1 or 0)
            finished[i] = nil
        end
        done = done + n
        if progress and n > 0 then
            local ok, e = pcall(progress, { done = done, failed = failed, total = total })
            if not ok then
                for h in pairs(index_of) do
                    h:close()
                end
                error(e, 0)
            end
        end
    end
    return results
end

return bulk
