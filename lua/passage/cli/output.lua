--- Where the command writes: stdout and stderr, with every secret scrubbed.
--
-- Every byte `passage-users` prints goes through here. The API key (and the
-- credentials of a base URL) are registered as secrets and replaced by
-- `[REDACTED]` in anything written, in the forms a server could echo them
-- back: as sent, JSON-escaped and percent-encoded. So a server that puts the
-- key into an error message cannot make it reach a terminal or a log.
-- @module passage.cli.output
local cjson = require("cjson").new()
local text = require "passage.cli.text"

local output = {}

local REDACTED = "[REDACTED]" -- as the library writes it in server texts
local forms = {} -- every form of every secret, longest first

local function percent_encoded(s)
    return (s:gsub("[^%w%-%._~]", function(c)
        return string.format("%%%02X", c:byte())
    end))
end

--- Registers a secret: from now on it never appears in what is written.
-- @tparam string secret a value to hide; nil and "" are ignored
function output.secret(secret)
    if type(secret) ~= "string" or secret == "" then
        return
    end
    for _, form in ipairs { secret, cjson.encode(secret):sub(2, -2), percent_encoded(secret) } do
        local known = false
        for _, f in ipairs(forms) do
            known = known or f == form
        end
        if not known then
            forms[#forms + 1] = form
        end
    end
    table.sort(forms, function(a, b)
        return #a > #b
    end)
end

local function replace_plain(s, form)
    local parts, from = {}, 1
    while true do
        local at, to = s:find(form, from, true)
        if not at then
            break
        end
        parts[#parts + 1] = s:sub(from, at - 1)
        parts[#parts + 1] = REDACTED
        from = to + 1
    end
    if from == 1 then
        return s
    end
    parts[#parts + 1] = s:sub(from)
    return table.concat(parts)
end

--- A text with every registered secret replaced.
-- @tparam string s
-- @treturn string
function output.scrub(s)
    for i = 1, #forms do
        s = replace_plain(s, forms[i])
    end
    return s
end

-- Characters that would act on a terminal rather than show: C0 controls
-- and DEL, the C1 controls as UTF-8 (U+0080..U+009F, such as CSI "c2 9b")
-- or as single bytes, and the bidi embeddings, overrides and isolates
-- (U+202A..U+202E, U+2066..U+2069) that reorder what follows them.
local function escaped_code_point(c)
    return string.format("\\u%04x", text.code_point(c))
end

--- A text as it may reach a terminal: every control and bidi character
-- written as an escape (`\x1b`, `\u202e`), so no server and no input file
-- can clear the screen, set the title or reorder a line.
-- @tparam string s
-- @treturn string
function output.printable(s)
    s = s:gsub("\194[\128-\159]", escaped_code_point)
        :gsub("\226\128[\170-\174]", escaped_code_point)
        :gsub("\226\129[\166-\169]", escaped_code_point)
    -- Single bytes: C0, DEL, and 0x80..0x9F that are not part of a UTF-8
    -- sequence (lead bytes 0xC2.. are followed by them legitimately).
    s = s:gsub("[%z\1-\31\127]", function(c)
        return string.format("\\x%02x", c:byte())
    end)
    return (text.fix_utf8(s, function(byte)
        return string.format("\\x%02x", byte:byte())
    end))
end

--- Writes to stdout.
-- @tparam string s
function output.out(s)
    io.stdout:write(output.scrub(s))
end

--- Writes to stderr.
-- @tparam string s
function output.err(s)
    io.stderr:write(output.scrub(s))
end

--- Writes a message line to stderr, prefixed with the command's name,
-- every control character escaped (`printable`).
-- @tparam string fmt a `string.format` pattern
-- @param ... its values
function output.say(fmt, ...)
    output.err("passage-users: " .. output.printable(string.format(fmt, ...)) .. "\n")
end

--- Whether `--quiet` was given: `note` then writes nothing.
output.quiet = false

--- Writes an informational line (a summary) as `say` does, unless quiet.
-- @tparam string fmt a `string.format` pattern
-- @param ... its values
function output.note(fmt, ...)
    if not output.quiet then
        output.say(fmt, ...)
    end
end

--- A writer for a file, scrubbing like stdout.
-- @param file an open Lua file
-- @treturn function writes a string to the file
function output.to_file(file)
    return function(s)
        file:write(output.scrub(s))
    end
end

return output
