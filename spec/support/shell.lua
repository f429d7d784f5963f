-- Runs a shell command for a spec: whether it succeeded, and what it
-- printed (stdout and stderr together), and its exit status.
--
-- io.popen's close() tells the exit status on Lua 5.2+ only (on Lua 5.1 and
-- LuaJIT it returns true whatever happened), so the command prints its
-- status after its output, behind a marker that capture() cuts off again.
local MARK = "@@passage-spec-exit-status:"

local M = {}

-- Runs cmd with sh; returns its stdout exactly as printed, and its exit
-- status (a number; 128 + n when signal n ended it).
function M.capture(cmd)
    local p = assert(io.popen("( " .. cmd .. "\n); printf '\\n" .. MARK .. "%d' $?"))
    local out = p:read("*a")
    p:close()
    local body, code = out:match("^(.*)\n" .. MARK:gsub("%p", "%%%0") .. "(%d+)$")
    assert(body, "no exit status after the output of: " .. cmd)
    return body, tonumber(code)
end

return setmetatable(M, {
    __call = function(_, cmd)
        local out, code = M.capture("( " .. cmd .. "\n) 2>&1")
        return code == 0, out, code
    end,
})
