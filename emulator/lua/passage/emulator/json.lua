-- JSON for the emulator, on top of lua-cjson.
--
-- The lua-cjson shipped by Debian (2.1.0) has no way to mark a Lua table as an
-- array, so an empty table always encodes as "{}". Rather than depend on a fork
-- (cjson.empty_array / array_mt exist only in the OpenResty build), every array of
-- a response is encoded here by hand: each element goes through cjson and the
-- pieces are joined, so an empty list is always "[]". Objects keep going through
-- cjson, where an empty table correctly becomes "{}".
local cjson = require("cjson")

local M = {}

M.null = cjson.null

-- Refuse pathological input instead of recursing deeply; a decode error is a 400.
if cjson.decode_max_depth then cjson.decode_max_depth(64) end
if cjson.encode_max_depth then cjson.encode_max_depth(64) end
-- Numbers such as NaN/Infinity in a request body are not JSON: reject them.
if cjson.decode_invalid_numbers then cjson.decode_invalid_numbers(false) end

M.encode = cjson.encode

-- Returns value or nil, err (never raises).
function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, tostring(v) end
  return v
end

-- Encodes a Lua sequence as a JSON array, "[]" when empty. encode_item defaults
-- to cjson.encode; pass a function returning a JSON string for cached items.
function M.array(list, encode_item)
  local n = #list
  if n == 0 then return "[]" end
  encode_item = encode_item or cjson.encode
  local parts = {}
  for i = 1, n do parts[i] = encode_item(list[i]) end
  return "[" .. table.concat(parts, ",") .. "]"
end

-- Array of already-encoded JSON strings.
function M.raw_array(strings)
  if #strings == 0 then return "[]" end
  return "[" .. table.concat(strings, ",") .. "]"
end

-- Encodes obj (a non-empty Lua table of plain members) and appends members whose
-- values are already JSON text: raw is a list of {name, json_text} pairs.
function M.object_with(obj, raw)
  local head = cjson.encode(obj)
  local parts = { head:sub(1, -2) } -- drop the closing brace
  local n = 1
  for i = 1, #raw do
    n = n + 1
    parts[n] = "," .. cjson.encode(raw[i][1]) .. ":" .. raw[i][2]
  end
  parts[n + 1] = "}"
  return table.concat(parts)
end

-- A name taken from a request (an unknown field, a bad key) as it can appear
-- in an error message: whole characters of valid UTF-8, at most 64 bytes.
function M.quote_name(s)
  s = tostring(s)
  if not M.valid_utf8(s) then return "?" end
  if #s <= 64 then return s end
  local cut = 64
  -- step back over continuation bytes so no character is split
  while cut > 0 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do
    cut = cut - 1
  end
  return s:sub(1, cut)
end

-- True when s is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
-- Written by hand because LuaJIT has no utf8 library.
function M.valid_utf8(s)
  if not s:find("[\128-\255]") then return true end
  local i, n = 1, #s
  local byte = string.byte
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    else
      local len, min
      if c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
      elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
      elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
      else return false end
      if i + len - 1 > n then return false end
      local cp = c % (2 ^ (7 - len))
      for k = 1, len - 1 do
        local cc = byte(s, i + k)
        if cc < 0x80 or cc > 0xBF then return false end
        cp = cp * 64 + (cc - 0x80)
      end
      if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return false end
      i = i + len
    end
  end
  return true
end

return M
