-- Runs passage-users (the build's wrapper, `make build`) as a process for
-- specs: what it wrote to stdout and stderr, and its exit status.
local shell = require "support.shell"

local M = {}

-- The command built for the interpreter that runs the specs (make spec:
-- Lua 5.4; make spec-luajit: LuaJIT), so the command line is checked on
-- each. jit is LuaJIT's module, nil elsewhere.
local BUILD = jit and "jit" or _VERSION:match("%d+%.%d+") -- luacheck: globals jit
M.BIN = "build/" .. BUILD .. "/bin/passage-users"

function M.quote(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- args: list of arguments; opts.env: variables to set (false unsets one),
-- opts.stdin: text for stdin (default: none, /dev/null).
-- Returns stdout, stderr, exit status.
function M.run(args, opts)
    opts = opts or {}
    local parts, set = { "env" }, {}
    for k, v in pairs(opts.env or {}) do
        if v == false then
            parts[#parts + 1] = "-u " .. k
        else
            set[#set + 1] = k .. "=" .. M.quote(v)
        end
    end
    for _, assignment in ipairs(set) do
        parts[#parts + 1] = assignment
    end
    parts[#parts + 1] = M.BIN
    for _, a in ipairs(args) do
        parts[#parts + 1] = M.quote(a)
    end
    local err_file = os.tmpname()
    local in_file
    if opts.stdin then
        in_file = os.tmpname()
        local f = assert(io.open(in_file, "wb"))
        f:write(opts.stdin)
        f:close()
    end
    local cmd = table.concat(parts, " ") .. " <" .. (in_file or "/dev/null") .. " 2>" .. err_file
    local out, code = shell.capture(cmd)
    local f = assert(io.open(err_file, "rb"))
    local err = f:read("*a")
    f:close()
    os.remove(err_file)
    if in_file then
        os.remove(in_file)
    end
    return out, err, code
end

-- The non-empty lines of a text.
function M.lines(text)
    local out = {}
    for line in text:gmatch("[^\n]+") do
        out[#out + 1] = line
    end
    return out
end

return M
