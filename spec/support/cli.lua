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

-- The shell text of a run: `env` with the variables (false unsets one),
-- the command and its quoted arguments.
function M.command(args, env)
    local parts, set = { "env" }, {}
    for k, v in pairs(env or {}) do
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
    return table.concat(parts, " ")
end

-- args: list of arguments; opts.env: variables to set (false unsets one),
-- opts.stdin: text for stdin (default: none, /dev/null).
-- Returns stdout, stderr, exit status.
function M.run(args, opts)
    opts = opts or {}
    local command = M.command(args, opts.env)
    local err_file = os.tmpname()
    local in_file
    if opts.stdin then
        in_file = os.tmpname()
        local f = assert(io.open(in_file, "wb"))
        f:write(opts.stdin)
        f:close()
    end
    local cmd = command .. " <" .. (in_file or "/dev/null") .. " 2>" .. err_file
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

-- A new empty folder for one spec's files; remove it with M.remove_dir.
function M.temp_dir()
    local path = os.tmpname()
    os.remove(path)
    assert(os.execute("mkdir -m 700 " .. M.quote(path)))
    return path
end

function M.remove_dir(path)
    assert(path:match("^/tmp/"), path)
    os.execute("rm -rf " .. M.quote(path))
end

-- Runs a shell command line in the background (in its own folder `dir`):
-- stdout to dir/out, stderr to dir/err (what the shell around it says, to
-- dir/launch). Returns a job for M.signal and M.wait. Job control is on in
-- the shell that starts it, so the command does not inherit an ignored SIGINT.
function M.start(shell_cmd, dir)
    local script = string.format("set -m; %s >%s/out 2>%s/err & echo $! >%s/pid; wait $!; "
        .. "echo $? >%s/rc", shell_cmd, dir, dir, dir, dir)
    os.execute("bash -c " .. M.quote(script) .. " </dev/null >" .. M.quote(dir .. "/launch") .. " 2>&1 &")
    local job = { dir = dir }
    for _ = 1, 100 do
        local f = io.open(dir .. "/pid")
        local pid = f and f:read("*n")
        if f then f:close() end
        if pid then
            job.pid = pid
            return job
        end
        os.execute("sleep 0.05")
    end
    error("the command did not start")
end

-- Sends a signal ("INT", "TERM") to the job's process.
function M.signal(job, name)
    os.execute(string.format("kill -%s %d", name, job.pid))
end

-- Waits (up to `seconds`) for the job's end: stdout, stderr, exit status.
function M.wait(job, seconds)
    for _ = 1, (seconds or 60) * 20 do
        local f = io.open(job.dir .. "/rc")
        local rc = f and f:read("*n")
        if f then f:close() end
        if rc then
            local function slurp(name)
                local g = assert(io.open(job.dir .. "/" .. name, "rb"))
                local text = g:read("*a")
                g:close()
                return text
            end
            return slurp("out"), slurp("err"), rc
        end
        os.execute("sleep 0.05")
    end
    error("the command did not end in time")
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
