-- Turns stored users into the JSON of the spec's schemas (UserInfo,
-- ListPaginatedUsersItem, WebAuthnDevices, UserRecentEvent). Encodings are cached
-- on the user record (fields _full and _item) and dropped by store.touch() when
-- the user changes, so a GET of an unchanged user costs one table lookup.
local json = require("passage.emulator.json")
local ts = require("passage.emulator.timestamp")

local M = {}
local null = json.null
local fmt = ts.format

local function scalar_fields(u)
  return {
    created_at = fmt(u.created_us),
    email = u.email,
    email_verified = u.email_verified,
    external_id = u.external_id,
    id = u.id,
    last_login_at = fmt(u.last_login_us),
    login_count = u.login_count,
    phone = u.phone,
    phone_verified = u.phone_verified,
    status = u.status,
    updated_at = fmt(u.updated_us),
    user_metadata = u.metadata or null,
  }
end

local function device_json(d)
  return json.encode({
    created_at = fmt(d.created_us),
    cred_id = d.cred_id,
    friendly_name = d.friendly_name,
    icons = { light = d.icon_light or null, dark = d.icon_dark or null },
    id = d.id,
    last_login_at = fmt(d.last_login_us),
    type = d.type,
    updated_at = fmt(d.updated_us),
    usage_count = d.usage_count,
  })
end

local function event_json(e)
  return json.encode({
    action = e.action,
    completed_at = e.completed_us and fmt(e.completed_us) or null,
    created_at = fmt(e.created_us),
    id = e.id,
    ip_addr = e.ip_addr,
    social_login_type = e.social_login_type or null,
    status = e.status,
    type = e.type,
    user_agent = e.user_agent,
    user_agent_display = e.user_agent_display,
  })
end

local function social_json(s)
  return {
    created_at = fmt(s.created_us),
    last_login_at = fmt(s.last_login_us),
    provider_id = s.provider_id,
    provider_identifier = s.provider_identifier,
  }
end

-- Distinct device types in first-seen order.
local function webauthn_types(devices)
  local seen, out = {}, {}
  for i = 1, #devices do
    local t = devices[i].type
    if not seen[t] then
      seen[t] = true
      out[#out + 1] = t
    end
  end
  return out
end

-- The UserInfo object as JSON text.
function M.user(u)
  local cached = u._full
  if cached then return cached end
  local obj = scalar_fields(u)
  local social = {}
  for name, s in pairs(u.social) do social[name] = social_json(s) end
  obj.social_connections = social -- an empty table encodes as {} (an object): right
  obj.webauthn = #u.devices > 0
  local s = json.object_with(obj, {
    { "recent_events", json.array(u.events, event_json) },
    { "webauthn_devices", json.array(u.devices, device_json) },
    { "webauthn_types", json.array(webauthn_types(u.devices)) },
  })
  u._full = s
  return s
end

-- {"user": UserInfo}, the body of get/create/update/activate/deactivate.
function M.user_response(u)
  return '{"user":' .. M.user(u) .. "}"
end

-- A ListPaginatedUsersItem as JSON text.
function M.item(u)
  local cached = u._item
  if cached then return cached end
  local s = json.encode(scalar_fields(u))
  u._item = s
  return s
end

function M.devices_response(u)
  return '{"devices":' .. json.array(u.devices, device_json) .. "}"
end

return M
