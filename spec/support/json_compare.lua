-- Helpers shared by the decoder specs (and any harness that cross-checks the
-- decoder): structural comparison of decoded Lua values, and a seeded
-- generator of random JSON documents.
local M = {}

local math_type = math.type or function(x)
  return type(x) == "number" and "float" or nil
end
M.math_type = math_type

-- Numbers are equal when they have the same value. A Lua integer and a float
-- are compared through the float, since another decoder may legitimately
-- return every number as a float (and round big integers once doing so).
local function same_number(a, b)
  if a == b then
    return true
  end
  if a ~= a and b ~= b then
    return true -- NaN never occurs in JSON, but do not report it twice
  end
  local ta, tb = math_type(a), math_type(b)
  if ta ~= tb then
    return (ta == "integer" and a + 0.0 or a) == (tb == "integer" and b + 0.0 or b)
  end
  return false
end
M.same_number = same_number

local function describe(v)
  if type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v) .. (math_type(v) and (" (" .. math_type(v) .. ")") or "")
end

-- Returns true when a and b are the same JSON value, else false and the path
-- of the first difference. Metatables are ignored (another decoder may not
-- mark arrays); nulls compare as values (lightuserdata NULL on both sides).
function M.diff(a, b, path)
  path = path or "$"
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return false, path .. ": " .. describe(a) .. " vs " .. describe(b)
  end
  if ta == "number" then
    if same_number(a, b) then
      return true
    end
    return false, path .. ": " .. describe(a) .. " vs " .. describe(b)
  end
  if ta ~= "table" then
    if a == b then
      return true
    end
    return false, path .. ": " .. describe(a) .. " vs " .. describe(b)
  end
  for k, v in pairs(a) do
    local ok, where = M.diff(v, b[k], path .. "[" .. describe(k) .. "]")
    if not ok then
      return false, where
    end
  end
  for k, v in pairs(b) do
    if a[k] == nil then
      return false, path .. "[" .. describe(k) .. "]: missing vs " .. describe(v)
    end
  end
  return true
end

-- Park-Miller generator: exact in doubles, so every Lua version produces the
-- same documents from the same seed.
function M.rng(seed)
  local x = seed % 2147483646 + 1
  return function(n)
    x = x * 16807 % 2147483647
    return x % n + 1
  end
end

local function utf8_char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
  elseif cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
    0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end
M.utf8_char = utf8_char

local ESCAPES = { '\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t" }
local WS = { "", "", "", " ", "\n", "\t", "\r\n", "  " }

-- A random code point that is not a surrogate.
local function code_point(r)
  local k = r(4)
  if k == 1 then
    local cp = 0x20 + r(0x5E)
    return (cp == 0x22 or cp == 0x5C) and 0x41 or cp -- raw '"' and '\\' would end or escape
  elseif k == 2 then
    return 0x7F + r(0x800 - 0x7F)
  elseif k == 3 then
    local cp = 0x7FF + r(0x10000 - 0x800)
    return (cp >= 0xD800 and cp <= 0xDFFF) and 0xFFFD or cp
  end
  return 0xFFFF + r(0x100000)
end

local function gen_string(r)
  local parts = { '"' }
  for _ = 1, r(12) - 1 do
    local k = r(10)
    if k <= 4 then
      local c = string.char(0x20 + r(0x5E))
      parts[#parts + 1] = (c == '"' or c == "\\") and ("\\" .. c) or c
    elseif k == 5 then
      parts[#parts + 1] = ESCAPES[r(#ESCAPES)]
    elseif k == 6 then
      parts[#parts + 1] = string.format("\\u%04x", r(0x20) - 1) -- control characters
    elseif k == 7 then
      local cp = code_point(r)
      if cp < 0x10000 then
        parts[#parts + 1] = string.format(r(2) == 1 and "\\u%04x" or "\\u%04X", cp)
      else
        cp = cp - 0x10000
        parts[#parts + 1] = string.format("\\u%04x\\u%04x", 0xD800 + math.floor(cp / 1024),
          0xDC00 + cp % 1024)
      end
    else
      parts[#parts + 1] = utf8_char(code_point(r))
    end
  end
  parts[#parts + 1] = '"'
  return table.concat(parts)
end
M.gen_string = gen_string

local function digits(r, n)
  local t = {}
  for i = 1, n do
    t[i] = tostring(r(10) - 1)
  end
  return table.concat(t)
end

local function gen_number(r)
  local k = r(6)
  local sign = r(3) == 1 and "-" or ""
  if k == 1 then
    return sign .. tostring(r(1000) - 1) -- small integers
  elseif k == 2 then
    return sign .. tostring(r(9)) .. digits(r, r(15)) -- up to 2^53-ish
  elseif k == 3 then
    return sign .. "0." .. digits(r, r(8))
  end
  -- any shape: long mantissas, fractions and exponents of every size
  local s = sign .. tostring(r(9)) .. digits(r, r(25) - 1)
  if r(2) == 1 then
    s = s .. "." .. digits(r, r(25))
  end
  if r(2) == 1 then
    local e = r(3) == 1 and r(340) or r(30)
    s = s .. (r(2) == 1 and "e" or "E") .. ({ "", "+", "-" })[r(3)] .. tostring(e - 1)
  end
  return s
end
M.gen_number = gen_number

-- A random JSON text: nested arrays and objects of strings (with escapes and
-- non-ASCII), numbers, booleans and nulls, with random whitespace. Object
-- keys sometimes repeat, to exercise "last one wins".
function M.gen_document(r, depth)
  depth = depth or 0
  local ws = function()
    return WS[r(#WS)]
  end
  local k = r(depth > 5 and 5 or 8)
  if k == 1 then
    return gen_string(r)
  elseif k == 2 then
    return gen_number(r)
  elseif k == 3 then
    return ({ "true", "false", "null" })[r(3)]
  elseif k == 4 then
    return gen_string(r)
  elseif k == 5 then
    return gen_number(r)
  elseif k == 6 or k == 7 then
    local parts = {}
    for i = 1, r(7) - 1 do
      parts[i] = ws() .. M.gen_document(r, depth + 1) .. ws()
    end
    return "[" .. table.concat(parts, ",") .. ws() .. "]"
  end
  local parts, keys = {}, {}
  for i = 1, r(7) - 1 do
    local key = (i > 1 and r(6) == 1) and keys[r(i - 1)] or gen_string(r)
    keys[i] = key
    parts[i] = ws() .. key .. ws() .. ":" .. ws() .. M.gen_document(r, depth + 1) .. ws()
  end
  return "{" .. table.concat(parts, ",") .. ws() .. "}"
end

return M
