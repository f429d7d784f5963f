--- Where `-o <file>` writes, by what the file is.
--
-- A regular file (or a name not yet taken) is written as `<file>.part` and
-- renamed over it once the output is complete, so a file of that name is
-- always a whole output; a run that stops leaves the `.part`. A symbolic
-- link is followed, and the same rule applies to its target (the link stays
-- a link). Anything else (a FIFO, a terminal, a device) cannot be replaced
-- and is written directly, from the first byte.
-- @module passage.cli.output_file
local output = require "passage.cli.output"
local signals = require "passage.cli.signals"

local output_file = {}

-- The type of what `path` names after following links ("file",
-- "directory", "fifo", "char", ...), the path to write and whether the
-- name is free; nil type when nothing is there.
local function target_of(path)
    local uv = signals.uv
    if not uv then
        -- Without libuv, test(1) tells: a symlink or anything but a regular
        -- file is written directly (through the link).
        local quoted = "'" .. path:gsub("'", "'\\''") .. "'"
        local special = os.execute("test -L " .. quoted .. " || { test -e " .. quoted
            .. " && ! test -f " .. quoted .. "; }")
        return (special == true or special == 0) and "special" or nil, path
    end
    local stat = uv.fs_stat(path)
    if stat then
        return stat.type, uv.fs_realpath(path) or path
    end
    local link = uv.fs_lstat(path)
    if link and link.type == "link" then
        -- A link to nothing yet: the file is made where it points.
        local target = uv.fs_readlink(path)
        if target and target:sub(1, 1) ~= "/" then
            target = (path:match("^(.*/)") or "") .. target
        end
        return nil, target or path
    end
    return nil, path
end

--- Opens the output.
-- @tparam string path what `-o` names
-- @return an output with `write(s)`, `finish()` (returns true, or nil and a
--   message) and `stop()` (returns where the partial output is, or nil);
--   or nil and a message
function output_file.open(path)
    local kind, target = target_of(path)
    if kind == "directory" then
        return nil, path .. ": is a directory"
    end
    local replace = kind == nil or kind == "file"
    local written = replace and target .. ".part" or target
    local file, err = io.open(written, "wb")
    if not file then
        return nil, tostring(err)
    end
    local out = { path = path, written = written }
    out.write = output.to_file(file)
    function out.finish()
        local closed, cerr = file:close()
        if not closed then
            return nil, string.format("cannot write %s: %s", written, tostring(cerr))
        end
        if replace then
            local renamed, rerr = os.rename(written, target)
            if not renamed then
                return nil, string.format("cannot rename %s: %s", written, tostring(rerr))
            end
        end
        return true
    end
    function out.stop()
        file:close()
        return replace and written or nil
    end
    return out
end

return output_file
