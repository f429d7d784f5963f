-- Calls a function with the stack nearly spent, so that the library raises
-- where otherwise only running out of memory would make it raise (Lua 5.4
-- runs out of nested C calls first, LuaJIT out of Lua stack). Used by the
-- specs of what a raise inside a decode or a response leaves behind.
local M = {}

-- f(...) under n nested pcalls: true and f's results, or the message of
-- what raised, in the nesting or in f.
function M.nested(n, f, ...)
    if n == 0 then
        return true, f(...)
    end
    return select(2, pcall(M.nested, n - 1, f, ...))
end

-- The depths worth trying, deepest first: from the deepest nesting that
-- still runs a function at all, up to 400 levels shallower.
function M.depths()
    local lo, hi = 1, 1000000
    while lo < hi do
        local mid = math.ceil((lo + hi) / 2)
        if M.nested(mid, function() end) == true then
            lo = mid
        else
            hi = mid - 1
        end
    end
    local depth, last = lo + 1, math.max(1, lo - 400)
    return function()
        depth = depth - 1
        if depth >= last then
            return depth
        end
    end
end

return M
