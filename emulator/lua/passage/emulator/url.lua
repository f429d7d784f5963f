-- Percent-decoding and query-string handling for the emulator.
-- Path segments are decoded exactly once, so an id sent as "..%2Fx" reaches the
-- handler as the literal string "../x" and simply matches no user.
local M = {}

local function hexbyte(h)
  return string.char(tonumber(h, 16))
end

-- Decodes %XX escapes; a malformed escape ("%zz", trailing "%") is kept as is.
function M.decode(s)
  return (s:gsub("%%(%x%x)", hexbyte))
end

-- Query values additionally use "+" for a space (form encoding).
function M.decode_query(s)
  return M.decode((s:gsub("%+", " ")))
end

local function escape_byte(c)
  return string.format("%%%02X", string.byte(c))
end

-- Encodes everything outside the unreserved set, keeping ":" and "," readable
-- because filter operators and order_by use them.
function M.encode(s)
  return (s:gsub("[^%w%-%._~:,]", escape_byte))
end

-- Encodes one path segment: like encode, and a segment of only "." or ".." (a
-- valid app id) has its dots escaped, since a client or proxy resolves a raw
-- "/apps/../users" to "/users".
function M.encode_segment(s)
  if s == "." or s == ".." then return (s:gsub("%.", "%%2E")) end
  return M.encode(s)
end

-- Splits "a=1&b=2" into a map; a repeated name keeps its last value.
function M.parse_query(q)
  local out = {}
  if not q or q == "" then return out end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if not k then k, v = pair, "" end
    out[M.decode_query(k)] = M.decode_query(v)
  end
  return out
end

-- Splits an undecoded path into decoded segments. Empty segments (from "//" or a
-- trailing "/") are kept so that "/users/" does not silently match "/users".
function M.split_path(path)
  local segs = {}
  local n = 0
  for seg in (path .. "/"):gmatch("([^/]*)/") do
    n = n + 1
    segs[n] = M.decode(seg)
  end
  return segs, n
end

return M
