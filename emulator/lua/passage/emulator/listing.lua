-- GET /apps/{app_id}/users: query parsing, filtering, ordering, paging, links.
-- The chosen defaults and semantics are listed in README.md ("Decisions").
local ts = require("passage.emulator.timestamp")
local url = require("passage.emulator.url")
local json = require("passage.emulator.json")
local store = require("passage.emulator.store")
local render = require("passage.emulator.render")

local M = {}

M.DEFAULT_LIMIT = 20
M.MAX_LIMIT = 500
M.DEFAULT_ORDER = "created_at:ASC"

local floor = math.floor

-- Filterable fields, in the order they appear in links, with their kind and the
-- operators the spec allows for them.
local ALL_OPS = { eq = true, ne = true, gt = true, lt = true, like = true, not_like = true }
local CMP_OPS = { eq = true, ne = true, gt = true, lt = true }
local FILTERS = {
  { name = "identifier", kind = "identifier", ops = ALL_OPS },
  { name = "id", kind = "string", field = "id", ops = ALL_OPS },
  { name = "login_count", kind = "integer", field = "login_count", ops = CMP_OPS },
  { name = "status", kind = "status", field = "status", ops = ALL_OPS },
  { name = "created_at", kind = "time", field = "created_us", ops = CMP_OPS },
  { name = "updated_at", kind = "time", field = "updated_us", ops = CMP_OPS },
  { name = "last_login_at", kind = "time", field = "last_login_us", ops = CMP_OPS },
}

-- Sortable fields -> user record field. identifier is refused by the spec.
local SORTABLE = {
  id = "id", email = "email", phone = "phone", status = "status",
  login_count = "login_count", created_at = "created_us", updated_at = "updated_us",
  last_login_at = "last_login_us",
}
M.SORTABLE = SORTABLE

local STATUSES = { active = true, inactive = true, pending = true }

-- Users who never logged in sort and compare as Go's zero time.
local ZERO_US = (ts.days_from_civil(1, 1, 1) * 86400) * 1000000

local function bad(msg) return nil, msg end

local function parse_int(name, s, min, max)
  if not s:find("^%d+$") or #s > 15 then return bad(name .. ": must be an integer") end
  local v = tonumber(s)
  if v < min or (max and v > max) then
    if max then return bad(string.format("%s: must be between %d and %d", name, min, max)) end
    return bad(string.format("%s: must be at least %d", name, min))
  end
  return v
end

-- SQL LIKE ("%" any run, "_" one byte), anchored, in time linear in the
-- pattern and bounded by (value length x piece length) per value: the pattern
-- is cut at "%" into pieces of fixed length ("_" matches any one byte), and
-- each middle piece is placed at its leftmost fit after the previous one, which
-- never loses a match (a fixed-length piece placed earlier leaves more room for
-- the rest). No Lua pattern with a quantifier is built, so nothing backtracks.
-- A piece without "_" is searched as plain text; one with "_" becomes a Lua
-- pattern of single-byte items ("." and escaped bytes) only.

-- LuaJIT and 5.1 patterns cannot hold a NUL byte (they take "%z"); 5.2+ take it
-- escaped, and "%z" there is a plain "z".
local NUL_ITEM = ("\0"):find("^%z$") and "%z" or "%\0"

local function piece_item(c)
  if c == "_" then return "." end
  if c == "\0" then return NUL_ITEM end
  if c:find("^%w$") then return c end
  return "%" .. c
end

local function compile_piece(text)
  if not text:find("_", 1, true) then return { len = #text, plain = text } end
  return { len = #text, pattern = (text:gsub(".", piece_item)) }
end

-- Where piece p occurs in s at or after init (first byte), or at exactly init
-- when anchored. Returns the first byte or nil.
local function find_piece(s, p, init, anchored)
  if p.plain then
    if anchored then return s:sub(init, init + p.len - 1) == p.plain and init or nil end
    return (s:find(p.plain, init, true))
  end
  return (s:find((anchored and "^" or "") .. p.pattern, init))
end

local function like_matcher(sql)
  -- Empty pieces between two "%" are dropped: "%%%%" is "%", so a run of
  -- any length costs nothing per value.
  local pieces, texts = {}, {}
  for text in (sql .. "%"):gmatch("([^%%]*)%%") do texts[#texts + 1] = text end
  for i, text in ipairs(texts) do
    if text ~= "" or i == 1 or i == #texts then pieces[#pieces + 1] = compile_piece(text) end
  end
  local fixed = #sql - select(2, sql:gsub("%%", ""))
  local head, tail, n = pieces[1], pieces[#pieces], #pieces
  return function(s)
    local len = #s
    if len < fixed then return false end -- each non-"%" byte takes one byte
    if n == 1 then return len == head.len and find_piece(s, head, 1, true) ~= nil end
    if not find_piece(s, head, 1, true) then return false end
    local tail_at = len - tail.len + 1
    if not find_piece(s, tail, tail_at, true) then return false end
    local pos = head.len + 1
    for i = 2, n - 1 do
      local p = pieces[i]
      if p.len > 0 then
        local at = find_piece(s, p, pos, false)
        if not at or at + p.len > tail_at then return false end
        pos = at + p.len
      end
    end
    return true
  end
end
M.like_matcher = like_matcher

local function parse_filter(f, raw)
  local op, val = raw:match("^(not_like):(.*)$")
  if not op then op, val = raw:match("^(%l%l%l?%l?):(.*)$") end
  if not (op and ALL_OPS[op] and op ~= "eq") then op, val = "eq", raw end
  if not f.ops[op] then
    return bad(string.format("%s: operator %s is not supported for this field", f.name, op))
  end
  local cond = { name = f.name, kind = f.kind, field = f.field, op = op, raw = raw }
  if op == "like" or op == "not_like" then
    if f.kind == "identifier" then val = val:lower() end
    cond.like = like_matcher(val)
  elseif f.kind == "integer" then
    local v, err = parse_int(f.name, val, 0)
    if not v then return nil, err end
    cond.value = v
  elseif f.kind == "time" then
    local v = ts.parse(val)
    if not v then
      return bad(f.name .. ": must be a timestamp in the format 2006-01-02T15:04:05.000000Z")
    end
    cond.value = v
  elseif f.kind == "status" then
    if not STATUSES[val] then return bad("status: must be one of active, inactive, pending") end
    cond.value = val
  elseif f.kind == "identifier" then
    cond.value = val:lower()
  else
    cond.value = val
  end
  return cond
end

-- A field repeated in order_by cannot change the order (its first occurrence
-- already decided every tie it could), so repeats are dropped: the comparator
-- has at most one key per sortable field however long the list is.
local function parse_order(s)
  local keys = {}
  local seen = {}
  local has_id = false
  if s == "" then return bad("order_by: must be a comma-separated list of <field>:<ASC|DESC>") end
  for item in (s .. ","):gmatch("([^,]*),") do
    local name, dir = item:match("^%s*([%w_]+):(%a+)%s*$")
    if not name then
      return bad("order_by: must be a comma-separated list of <field>:<ASC|DESC>")
    end
    if name == "identifier" then return bad("order_by: cannot order by identifier") end
    local field = SORTABLE[name]
    if not field then return bad("order_by: unknown field " .. name) end
    dir = dir:upper()
    if dir ~= "ASC" and dir ~= "DESC" then return bad("order_by: direction must be ASC or DESC") end
    if not seen[name] then
      seen[name] = true
      keys[#keys + 1] = { name = name, field = field, desc = dir == "DESC" }
    end
    if name == "id" then has_id = true end
  end
  -- Ties are always broken by id so that pages never overlap or skip.
  if not has_id then keys[#keys + 1] = { name = "id", field = "id", desc = false } end
  return keys
end

-- Parses the raw query. Returns a request table or nil, message.
-- now_s: current time in seconds (for the created_before default).
function M.parse(query, now_s)
  local q = url.parse_query(query)
  local r = { filters = {} }
  local err
  r.page, err = parse_int("page", q.page or "1", 1)
  if not r.page then return nil, err end
  r.limit, err = parse_int("limit", q.limit or tostring(M.DEFAULT_LIMIT), 1, M.MAX_LIMIT)
  if not r.limit then return nil, err end
  if q.created_before then
    r.created_before, err = parse_int("created_before", q.created_before, 0)
    if not r.created_before then return nil, err end
  else
    -- The next whole second: everything created before this request is inside.
    r.created_before = floor(now_s) + 1
  end
  r.order_by = q.order_by
  r.order, err = parse_order(q.order_by or M.DEFAULT_ORDER)
  if not r.order then return nil, err end
  for _, f in ipairs(FILTERS) do
    local raw = q[f.name]
    if raw ~= nil then
      local cond
      cond, err = parse_filter(f, raw)
      if not cond then return nil, err end
      r.filters[#r.filters + 1] = cond
    end
  end
  return r
end

local function field_value(u, field)
  local v = u[field]
  if v == nil then return ZERO_US end -- last_login_us of a never-logged-in user
  return v
end

local function test(cond, v)
  local op = cond.op
  if op == "eq" then return v == cond.value
  elseif op == "ne" then return v ~= cond.value
  elseif op == "gt" then return v > cond.value
  elseif op == "lt" then return v < cond.value
  elseif op == "like" then return cond.like(v)
  else return not cond.like(v) end
end

-- identifier matches email OR phone; the negative operators (ne, not_like) hold
-- only when they hold for both, i.e. "no identifier of this user matches".
local function match_identifier(cond, u)
  local e, p = u.email, u.phone
  if cond.op == "ne" or cond.op == "not_like" then
    return test(cond, e) and test(cond, p)
  end
  return (e ~= "" and test(cond, e)) or (p ~= "" and test(cond, p))
end

local function matches(filters, u)
  for i = 1, #filters do
    local c = filters[i]
    if c.kind == "identifier" then
      if not match_identifier(c, u) then return false end
    elseif not test(c, field_value(u, c.field)) then
      return false
    end
  end
  return true
end

local function comparator(keys)
  local n = #keys
  if n == 2 and keys[1].field == "created_us" and keys[2].field == "id" and not keys[2].desc then
    -- The default order, written out for speed.
    if keys[1].desc then
      return function(a, b)
        local x, y = a.created_us, b.created_us
        if x ~= y then return x > y end
        return a.id < b.id
      end
    end
    return function(a, b)
      local x, y = a.created_us, b.created_us
      if x ~= y then return x < y end
      return a.id < b.id
    end
  end
  return function(a, b)
    for i = 1, n do
      local k = keys[i]
      local x, y = field_value(a, k.field), field_value(b, k.field)
      if x ~= y then
        if k.desc then return x > y end
        return x < y
      end
    end
    return false
  end
end

-- When every user of the app was created before the anchor, the anchor filters
-- nothing, so the key leaves it out: a walk that does not pin created_before
-- (its default moves every second) still hits the cache.
local function cache_key(app, r)
  local anchor = r.created_before * 1000000
  local parts = { anchor > app.max_created_us and "*" or tostring(r.created_before) }
  for _, k in ipairs(r.order) do parts[#parts + 1] = k.name .. (k.desc and "-" or "+") end
  for _, c in ipairs(r.filters) do parts[#parts + 1] = c.name .. "=" .. c.raw end
  return table.concat(parts, "\0")
end

-- The filtered, sorted users of app for request r, cached per query until the
-- app changes.
function M.select(app, r)
  local key = cache_key(app, r)
  local list = store.cached_list(app, key)
  if list then return list end
  list = {}
  local n = 0
  local limit_us = r.created_before * 1000000
  local filters = r.filters
  local all = app.all
  for i = 1, #all do
    local u = all[i]
    if u.created_us < limit_us and matches(filters, u) then
      n = n + 1
      list[n] = u
    end
  end
  table.sort(list, comparator(r.order))
  store.cache_list(app, key, list)
  return list
end

local function href(app_id, r, page)
  local parts = {
    "page=" .. string.format("%d", page),
    "limit=" .. string.format("%d", r.limit),
    "created_before=" .. string.format("%d", r.created_before),
  }
  if r.order_by then parts[#parts + 1] = "order_by=" .. url.encode(r.order_by) end
  for _, c in ipairs(r.filters) do parts[#parts + 1] = c.name .. "=" .. url.encode(c.raw) end
  return "/v1/apps/" .. url.encode_segment(app_id) .. "/users?" .. table.concat(parts, "&")
end

-- Builds the ListPaginatedUsersResponse JSON text for a parsed request.
function M.respond(app, r)
  local list = M.select(app, r)
  local total = #list
  local limit, page = r.limit, r.page
  local last = math.max(1, math.ceil(total / limit))
  local items = {}
  local first_i = (page - 1) * limit + 1
  local last_i = math.min(total, page * limit)
  for i = first_i, last_i do items[#items + 1] = render.item(list[i]) end
  local links = {
    first = { href = href(app.id, r, 1) },
    last = { href = href(app.id, r, last) },
    self = { href = href(app.id, r, page) },
    next = { href = page < last and href(app.id, r, page + 1) or "" },
    previous = { href = page > 1 and href(app.id, r, math.min(page - 1, last)) or "" },
  }
  return json.object_with({
    _links = links,
    created_before = r.created_before,
    limit = limit,
    page = page,
    total_users = total,
  }, { { "users", json.raw_array(items) } })
end

return M
