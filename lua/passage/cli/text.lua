--- UTF-8 facts the command needs on any Lua (5.1, LuaJIT and later): where
-- a text stops being UTF-8, the code point of a short sequence, and a text
-- with its bad bytes replaced.
-- @module passage.cli.text
local text = {}

local utf8_lib = rawget(_G, "utf8") -- Lua 5.3+

-- The length of the valid UTF-8 sequence at `i`, or nil.
local function sequence_length(s, i)
    local a = s:byte(i)
    if a < 0x80 then
        return 1
    end
    local n, low, high
    if a >= 0xC2 and a <= 0xDF then
        n = 2
    elseif a >= 0xE0 and a <= 0xEF then
        n = 3
        low = (a == 0xE0) and 0xA0 or 0x80
        high = (a == 0xED) and 0x9F or 0xBF
    elseif a >= 0xF0 and a <= 0xF4 then
        n = 4
        low = (a == 0xF0) and 0x90 or 0x80
        high = (a == 0xF4) and 0x8F or 0xBF
    else
        return nil
    end
    for k = 1, n - 1 do
        local b = s:byte(i + k)
        local lo, hi = 0x80, 0xBF
        if k == 1 and low then
            lo, hi = low, high
        end
        if not b or b < lo or b > hi then
            return nil
        end
    end
    return n
end

--- The position of the first byte at or after `from` that is not part of
-- valid UTF-8, or nil when the rest is valid.
-- @tparam string s
-- @tparam[opt=1] int from
-- @treturn ?int
function text.bad_byte(s, from)
    from = from or 1
    if utf8_lib then
        local _, bad = utf8_lib.len(s, from)
        return bad
    end
    local i = s:find("[\128-\255]", from)
    while i do
        local n = sequence_length(s, i)
        if not n then
            return i
        end
        i = s:find("[\128-\255]", i + n)
    end
    return nil
end

--- The code point of one UTF-8 sequence (of at most three bytes).
-- @tparam string c
-- @treturn int
function text.code_point(c)
    local a, b, d = c:byte(1, 3)
    if #c == 1 then
        return a
    elseif #c == 2 then
        return (a - 0xC0) * 64 + (b - 0x80)
    end
    return ((a - 0xE0) * 64 + (b - 0x80)) * 64 + (d - 0x80)
end

--- A text with each byte that is not part of valid UTF-8 replaced.
-- @tparam string s
-- @tparam function replace called with the bad byte, returns its text
-- @treturn string
function text.fix_utf8(s, replace)
    local bad = text.bad_byte(s)
    if not bad then
        return s
    end
    local out, at = {}, 1
    while bad do
        out[#out + 1] = s:sub(at, bad - 1)
        out[#out + 1] = replace(s:sub(bad, bad))
        at = bad + 1
        bad = text.bad_byte(s, at)
    end
    out[#out + 1] = s:sub(at)
    return table.concat(out)
end

return text
