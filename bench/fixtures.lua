-- Deterministic, realistic response bodies for the decoder benchmark and
-- specs: a ListPaginatedUsersResponse page (GET /apps/{app_id}/users) and a
-- UserResponse with every UserInfo field, both shaped like the documented
-- examples and encoded compactly, the way the server sends them.
local fixtures = {}

-- Park-Miller generator: exact in doubles, so every Lua version agrees.
local function rng(seed)
  local x = seed % 2147483646 + 1
  return function(n)
    x = x * 16807 % 2147483647
    return x % n + 1
  end
end

local function pick(r, list)
  return list[r(#list)]
end

local ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

local function id(r, n)
  local t = {}
  for i = 1, n or 24 do
    local k = r(#ALNUM)
    t[i] = ALNUM:sub(k, k)
  end
  return table.concat(t)
end

local function timestamp(r)
  return string.format("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", 2023 + r(2), r(12), r(28),
    r(24) - 1, r(60) - 1, r(60) - 1, r(1000000) - 1)
end

local FIRST = { "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "José",
  "Zoë", "Bjørn", "Margaret", "Ken", "Dennis", "Radia", "Sophie", "Tim" }
local LAST = { "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen",
  "Núñez", "Hamilton", "Thompson", "Ritchie", "Perlman", "Wilson", "Lee" }
local STATUS = { "active", "active", "active", "inactive", "pending" }
local PLAN = { "free", "team", "business", "enterprise" }

-- Just enough of an encoder for the fixtures; the specs never rely on it for
-- anything but producing valid JSON.
local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" }
    return named[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode(v)
  local t = type(v)
  if t == "string" then
    return quote(v)
  elseif t == "number" then
    if v == math.floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
      return string.format("%d", v)
    end
    return string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  elseif v == fixtures.null then
    return "null"
  end
  local parts = {}
  if v[1] ~= nil or v.__array then
    for i = 1, #v do
      parts[i] = encode(v[i])
    end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  table.sort(keys) -- the server sends fields in schema (alphabetical) order
  for i, k in ipairs(keys) do
    parts[i] = quote(k) .. ":" .. encode(v[k])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

fixtures.null = setmetatable({}, { __name = "fixtures.null" })
fixtures.encode = encode

local function metadata(r, first)
  local k = r(4)
  if k == 1 then
    return fixtures.null
  end
  local m = { first_name = first, beta_tester = r(2) == 1 }
  if k == 4 then
    m.plan = pick(r, PLAN)
    m.seats = r(200)
  end
  if k == 4 and r(3) == 1 then
    m.notes = "prefers <email> & SMS\nsince " .. (2000 + r(24))
  end
  return m
end

-- One ListPaginatedUsersItem.
local function list_item(r, i)
  local first, last = pick(r, FIRST), pick(r, LAST)
  local logged_in = r(6) > 1
  local phone = r(3) > 1 and string.format("+1415555%04d", r(10000) - 1) or ""
  return {
    created_at = timestamp(r),
    email = (first .. "." .. last .. i .. "@example.com"):lower(),
    email_verified = r(4) > 1,
    external_id = r(5) == 1 and id(r, 12) or "",
    id = id(r),
    last_login_at = logged_in and timestamp(r) or "0001-01-01T00:00:00Z",
    login_count = logged_in and r(5000) or 0,
    phone = phone,
    phone_verified = phone ~= "" and r(2) == 1,
    status = pick(r, STATUS),
    updated_at = timestamp(r),
    user_metadata = metadata(r, first),
  }
end

local function link(page, limit)
  return {
    href = page and string.format("/v1/apps/appid123/users?page=%d&limit=%d&created_before=1731923000",
      page, limit) or "",
  }
end

-- The body of a page of n users (n = 500 is about 186 KB).
function fixtures.page(n, seed)
  local r = rng(seed or 42)
  local users = { __array = true }
  for i = 1, n do
    users[i] = list_item(r, i)
  end
  return encode({
    _links = { first = link(1, n), last = link(7, n), next = link(2, n), previous = link(nil),
      self = link(1, n) },
    created_before = 1731923000,
    limit = n,
    page = 1,
    total_users = 7 * n - 13,
    users = users,
  })
end

-- The body of GET /users/{user_id}: a UserResponse with every UserInfo field.
function fixtures.user(seed)
  local r = rng(seed or 7)
  local u = list_item(r, 1)
  local events = { __array = true }
  for i = 1, 3 do
    local t = timestamp(r)
    events[i] = {
      action = "login", completed_at = t, created_at = t, id = id(r),
      ip_addr = string.format("203.0.113.%d", r(254)), social_login_type = fixtures.null,
      status = "complete", type = "login",
      user_agent = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        .. "(KHTML, like Gecko) Version/17.5 Safari/605.1.15",
      user_agent_display = "Safari 17.5 on macOS",
    }
  end
  u.recent_events = events
  u.social_connections = {
    google = { created_at = timestamp(r), last_login_at = timestamp(r),
      provider_id = "109876543210987654321", provider_identifier = u.email },
  }
  u.webauthn = true
  u.webauthn_devices = { {
    created_at = timestamp(r), cred_id = id(r, 22), friendly_name = "iCloud Keychain",
    icons = { light = "data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=",
      dark = fixtures.null },
    id = id(r), last_login_at = timestamp(r), type = "passkey", updated_at = timestamp(r),
    usage_count = r(100),
  } }
  u.webauthn_types = { "passkey" }
  return encode({ user = u })
end

return fixtures
