-- Runs a shell command for a spec: whether it succeeded, and what it
-- printed (stdout and stderr together).
return function(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("*a")
    local ok, _, code = p:close()
    return (ok == true or ok == 0) and (code == nil or code == 0), out
end
