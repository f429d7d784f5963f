-- Many calls with at most N in flight on one client; every result comes
-- back in input order, and one failure does not stop the rest. Retries and
-- timeouts apply per call, as for single calls.
local bulk = {}

-- `engine`: the client's request engine; `calls`: engine calls, already
-- checked; returns results[i] = { value = v } or { err = e }. `progress`,
-- when given, is called with { done, failed, total } after each poll that
-- finished calls; if it raises, the calls still running are cancelled and
-- its error goes on to the caller as it was.
function bulk.run(engine, calls, max_in_flight, progress)
    local results = {}
    local index_of = {}
    local foreign = {} -- other handles of the client that finished meanwhile
    local next_call, in_flight, total = 1, 0, #calls
    local done, failed = 0, 0
    while next_call <= total or in_flight > 0 do
        while in_flight < max_in_flight and next_call <= total do
            index_of[engine:start(calls[next_call])] = next_call
            next_call = next_call + 1
            in_flight = in_flight + 1
        end
        local done_before = done
        for _, h in ipairs(engine:poll(1000)) do
            local i = index_of[h]
            if i then
                index_of[h] = nil
                in_flight = in_flight - 1
                results[i] = { value = h.value, err = h.err }
                done = done + 1
                failed = failed + (h.err and 1 or 0)
            else
                foreign[#foreign + 1] = h
            end
        end
        if progress and done > done_before then
            local ok, e = pcall(progress, { done = done, failed = failed, total = total })
            if not ok then
                for h in pairs(index_of) do
                    engine:discard(h)
                end
                for _, h in ipairs(foreign) do
                    engine:requeue(h)
                end
                error(e, 0)
            end
        end
    end
    -- Handles started outside the bulk run stay for the caller's next poll.
    for _, h in ipairs(foreign) do
        engine:requeue(h)
    end
    return results
end

return bulk
