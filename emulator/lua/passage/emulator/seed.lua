-- Bulk creation of realistic users for tests and benchmarks.
--
-- Deterministic: the same seed on the same app state yields the same ids,
-- identifiers, timestamps and details. Timestamps are spread over a fixed window
-- (2023-01-01 .. 2025-06-30 UTC, cut to end a day before "now" if the clock were
-- earlier), so they are strictly in the past and do not depend on when seeding ran.
-- Identifiers come from a per-app counter, which keeps emails and phones unique
-- even when an app is seeded several times.
local rng = require("passage.emulator.rng")
local ts = require("passage.emulator.timestamp")
local store = require("passage.emulator.store")

local M = {}

local US = 1000000
local WINDOW_START = ts.days_from_civil(2023, 1, 1) * 86400 * US
local WINDOW_END = ts.days_from_civil(2025, 6, 30) * 86400 * US

local FIRST = { "ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken",
  "dennis", "frances", "john", "radia", "tim", "linus", "anita", "katherine", "niklaus",
  "leslie", "shafi", "yukihiro" }
local LAST = { "lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "hamilton",
  "thompson", "ritchie", "allen", "mccarthy", "perlman", "berners", "torvalds", "borg",
  "johnson", "wirth", "lamport", "goldwasser", "matsumoto" }
local DOMAINS = { "example.com", "example.org", "example.net", "mail.example.com" }
local AREAS = { "201", "212", "305", "312", "415", "503", "617", "702", "808", "917" }
local PLANS = { "free", "pro", "team", "enterprise" }
local UAS = {
  { "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    .. "Version/17.5 Safari/605.1.15", "Safari 17.5 on macOS" },
  { "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    .. "Chrome/126.0.0.0 Safari/537.36", "Chrome 126 on Windows" },
  { "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    .. "Version/17.5 Mobile/15E148 Safari/604.1", "Mobile Safari 17.5 on iOS" },
  { "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", "Firefox 127 on Linux" },
}
local DEVICE_KINDS = {
  { "passkey", "iCloud Keychain",
    "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=" },
  { "passkey", "Google Password Manager", nil },
  { "platform", "Windows Hello", nil },
  { "security_key", "YubiKey 5C", nil },
}
local SOCIAL = { "google", "github", "apple" }

local function between(g, lo, hi)
  if hi <= lo then return lo end
  return lo + math.floor(g:float() * (hi - lo))
end

local function make_events(g, u, n)
  local events = {}
  for i = 1, n do
    local at = between(g, u.created_us, u.last_login_us or u.updated_us)
    local ua = g:pick(UAS)
    local complete = g:int(10) > 1
    local action = (i == n and u.login_count <= 1) and "register" or "login"
    events[i] = {
      id = g:id(24),
      action = action,
      type = action,
      status = complete and "complete" or "incomplete",
      created_us = at,
      completed_us = complete and at + g:int(9000000) or nil,
      ip_addr = string.format("203.0.113.%d", g:int(254)),
      user_agent = ua[1],
      user_agent_display = ua[2],
      social_login_type = nil,
    }
  end
  return events
end

local function make_devices(g, u, n)
  local devices = {}
  for i = 1, n do
    local kind = g:pick(DEVICE_KINDS)
    local created = between(g, u.created_us, u.updated_us)
    local last = between(g, created, u.updated_us)
    devices[i] = {
      id = g:id(24),
      cred_id = g:id(22),
      friendly_name = kind[2],
      type = kind[1],
      icon_light = kind[3], icon_dark = nil,
      created_us = created, updated_us = last, last_login_us = last,
      usage_count = g:int(60),
    }
  end
  return devices
end

-- Creates count users in app. Returns the number created.
function M.run(state, app, count, seed)
  local g = rng.new(seed or 42)
  local stop = WINDOW_END
  local now = state:now_us()
  if stop > now - 86400 * US then stop = now - 86400 * US end
  local start = WINDOW_START
  if start >= stop then start = stop - 365 * 86400 * US end
  local users, by_email, by_phone = app.users, app.by_email, app.by_phone
  for _ = 1, count do
    local email, phone
    repeat
      app.seed_seq = app.seed_seq + 1
      local k = app.seed_seq
      email = string.format("%s.%s.%d@%s", g:pick(FIRST), g:pick(LAST), k, g:pick(DOMAINS))
      phone = string.format("+1%s%07d", AREAS[k % #AREAS + 1], k % 10000000)
    until not by_email[email] and not by_phone[phone]
    local id
    repeat id = g:id(24) until not users[id]
    local created = between(g, start, stop - US)
    local roll = g:int(100)
    local status = roll <= 70 and "active" or (roll <= 85 and "inactive" or "pending")
    local logins = status == "pending" and 0 or (g:int(4) == 1 and 0 or g:int(250))
    local last_login = logins > 0 and between(g, created, stop) or nil
    local updated = between(g, last_login or created, stop)
    local u = {
      id = id, email = email, phone = phone,
      email_verified = status ~= "pending" and g:int(10) > 2,
      phone_verified = g:int(10) > 6,
      external_id = "",
      status = status,
      login_count = logins,
      created_us = created, updated_us = updated, last_login_us = last_login,
      metadata = nil,
      devices = {}, events = {}, social = {},
    }
    if g:int(10) > 3 then
      u.metadata = { plan = g:pick(PLANS), newsletter = g:int(2) == 1, seats = g:int(50) }
    end
    if logins > 0 then
      u.events = make_events(g, u, g:int(logins < 3 and logins or 3))
      if g:int(10) <= 3 then u.devices = make_devices(g, u, g:int(2)) end
      if g:int(10) == 1 then
        local name = g:pick(SOCIAL)
        u.social[name] = {
          provider_id = tostring(100000000 + g:int(899999999)),
          provider_identifier = email,
          created_us = created, last_login_us = last_login,
        }
      end
    end
    users[id] = u
    if created > app.max_created_us then app.max_created_us = created end
    local n = #app.all + 1
    app.all[n] = u
    u._pos = n
    by_email[email] = u
    by_phone[phone] = u
  end
  store.touch(app, nil)
  return count
end

return M
