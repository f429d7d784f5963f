-- The emulator's state: apps, their users, uniqueness indexes, per-app list
-- caches, request statistics and the fault queue. It lives in plain Lua tables,
-- so inside nginx (one worker) it is shared by every request of that worker.
--
-- Every mutation of an app's users goes through touch(), which bumps the app's
-- version and drops its list cache; list results are cached per query and are
-- valid only for the version they were built at.
local rng = require("passage.emulator.rng")
local ts = require("passage.emulator.timestamp")
local json = require("passage.emulator.json")

local M = {}
M.__index = M

M.DEFAULT_APP = "test_app"
M.DEFAULT_KEY = "test_key"
local MAX_CACHED_LISTS = 64

-- opts.clock: function returning the current time in seconds (may be
-- fractional). Defaults to os.time.
function M.new(opts)
  opts = opts or {}
  local self = setmetatable({ clock = opts.clock or os.time }, M)
  self:reset(false)
  return self
end

-- Back to the start state: one app test_app/test_key (none when empty is true),
-- no faults, no statistics.
function M:reset(empty)
  self.apps = {}
  self.rng = rng.new(20240101)
  self.last_us = 0
  self.stats = { total = 0, routes = {} }
  self.faults = { latency_ms = 0, next = {} }
  if not empty then self:add_app(M.DEFAULT_APP, M.DEFAULT_KEY) end
end

-- Current time in integer microseconds, strictly increasing across calls so
-- that two users created in one clock tick still have distinct timestamps.
function M:now_us()
  local us = ts.from_seconds(self.clock())
  if us <= self.last_us then us = self.last_us + 1 end
  self.last_us = us
  return us
end

-- Creates an app, or replaces the key of an existing one. Returns app, created.
function M:add_app(id, key)
  local app = self.apps[id]
  if app then
    app.key = key
    return app, false
  end
  app = {
    id = id, key = key,
    users = {},       -- id -> user
    all = {},         -- array of users (unordered), for listing
    by_email = {},    -- lower-cased email -> user
    by_phone = {},    -- phone -> user
    version = 0,
    lists = {}, lists_n = 0,
    seed_seq = 0,     -- identifiers handed out by seeding so far
    max_created_us = 0, -- newest created_at ever inserted (not lowered on delete)
  }
  self.apps[id] = app
  return app, true
end

-- Marks a user (optional) and its app as changed.
function M.touch(app, u)
  if u then
    u._full = nil
    u._item = nil
  end
  app.version = app.version + 1
  if app.lists_n > 0 then
    app.lists = {}
    app.lists_n = 0
  end
end

-- A fresh user id unique within the app.
function M:new_id(app, gen)
  gen = gen or self.rng
  while true do
    local id = gen:id(24)
    if not app.users[id] then return id end
  end
end

-- Inserts a fully built user record; indexes must be free (callers check).
function M.insert(app, u)
  app.users[u.id] = u
  local n = #app.all + 1
  app.all[n] = u
  u._pos = n
  if u.created_us > app.max_created_us then app.max_created_us = u.created_us end
  if u.email ~= "" then app.by_email[u.email] = u end
  if u.phone ~= "" then app.by_phone[u.phone] = u end
  M.touch(app, nil)
end

function M.remove(app, u)
  app.users[u.id] = nil
  local all = app.all
  local n = #all
  local last = all[n]
  all[u._pos] = last
  last._pos = u._pos
  all[n] = nil
  if u.email ~= "" and app.by_email[u.email] == u then app.by_email[u.email] = nil end
  if u.phone ~= "" and app.by_phone[u.phone] == u then app.by_phone[u.phone] = nil end
  M.touch(app, u)
end

-- Applies a JSON-merge-patch style metadata change: keys with null are removed,
-- other keys are set. Returns the new table (nil when it was nil and the patch
-- carried nothing).
local function merge_metadata(old, patch)
  local out = {}
  if old then for k, v in pairs(old) do out[k] = v end end
  for k, v in pairs(patch) do
    if v == json.null then out[k] = nil else out[k] = v end
  end
  return out
end
M.merge_metadata = merge_metadata

-- Changes to a user are made on a copy (the store's own record is untouched),
-- which the handler renders and only then commits with insert() or replace():
-- a user that cannot be rendered is never stored, so no later request that
-- touches it can fail.

-- A copy of a user record, without its cached encodings. Lists (devices,
-- events, social) are shared: a change to one replaces the list.
function M.copy(u)
  local c = {}
  for k, v in pairs(u) do c[k] = v end
  c._full, c._item = nil, nil
  return c
end

-- A new user (not yet stored) from a validated body, or nil, message.
function M:new_user(app, body)
  local email, phone = body.email or "", body.phone or ""
  if email ~= "" and app.by_email[email] then return nil, "email: already in use" end
  if phone ~= "" and app.by_phone[phone] then return nil, "phone: already in use" end
  local now = self:now_us()
  local md = nil
  if body.has_metadata and body.user_metadata ~= json.null then
    md = merge_metadata(nil, body.user_metadata)
  end
  return {
    id = self:new_id(app),
    email = email, phone = phone,
    email_verified = false, phone_verified = false,
    external_id = "",
    status = "active",
    login_count = 0,
    created_us = now, updated_us = now, last_login_us = nil,
    metadata = md,
    devices = {}, events = {}, social = {},
  }
end

-- u changed by a validated update body: a copy, or u itself when the body
-- changes nothing; nil, message when an identifier is taken.
function M:updated_user(app, u, body)
  local email, phone = body.email, body.phone
  if email and email ~= u.email then
    local other = app.by_email[email]
    if other and other.id ~= u.id then return nil, "email: already in use" end
  end
  if phone and phone ~= u.phone then
    local other = app.by_phone[phone]
    if other and other.id ~= u.id then return nil, "phone: already in use" end
  end
  local c = M.copy(u)
  local changed = false
  if email and email ~= u.email then
    c.email, c.email_verified = email, false
    changed = true
  end
  if phone and phone ~= u.phone then
    c.phone, c.phone_verified = phone, false
    changed = true
  end
  if body.has_metadata then
    if body.user_metadata == json.null then
      c.metadata = nil
    else
      c.metadata = merge_metadata(u.metadata, body.user_metadata)
    end
    changed = true
  end
  if not changed then return u end
  c.updated_us = self:now_us()
  return c
end

-- u with another status: a copy, or u itself when the status is the same.
function M:with_status(u, status)
  if u.status == status then return u end
  local c = M.copy(u)
  c.status = status
  c.updated_us = self:now_us()
  return c
end

function M.find_device(u, device_id)
  for i, d in ipairs(u.devices) do
    if d.id == device_id then return d, i end
  end
end

-- A copy of u without its device at index.
function M:without_device(u, index)
  local c = M.copy(u)
  local devices = {}
  for i, d in ipairs(u.devices) do
    if i ~= index then devices[#devices + 1] = d end
  end
  c.devices = devices
  c.updated_us = self:now_us()
  return c
end

-- Puts new in the place of old (same id), identifiers indexed anew.
function M.replace(app, old, new)
  app.users[new.id] = new
  app.all[old._pos] = new
  new._pos = old._pos
  if old.email ~= "" and app.by_email[old.email] == old then app.by_email[old.email] = nil end
  if old.phone ~= "" and app.by_phone[old.phone] == old then app.by_phone[old.phone] = nil end
  if new.email ~= "" then app.by_email[new.email] = new end
  if new.phone ~= "" then app.by_phone[new.phone] = new end
  M.touch(app, nil)
end

-- Revoking refresh tokens changes nothing visible in a user object; the count is
-- kept for tests that want to see the effect.
function M.revoke_tokens(u)
  u.tokens_revoked = (u.tokens_revoked or 0) + 1
end

-- Statistics: requests served per route template and status.
function M:count(route, status)
  local st = self.stats
  st.total = st.total + 1
  local r = st.routes[route]
  if not r then
    r = {}
    st.routes[route] = r
  end
  local key = tostring(status)
  r[key] = (r[key] or 0) + 1
end

function M:reset_stats()
  self.stats = { total = 0, routes = {} }
end

-- List cache: key -> sorted array of users, valid for the app's current version.
function M.cached_list(app, key)
  return app.lists[key]
end

function M.cache_list(app, key, list)
  if app.lists_n >= MAX_CACHED_LISTS then
    app.lists = {}
    app.lists_n = 0
  end
  app.lists[key] = list
  app.lists_n = app.lists_n + 1
end

return M
