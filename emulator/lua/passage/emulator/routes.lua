-- Every route of the emulator, one line each: method, path template, action.
-- The handler matches requests against this table and nothing else, so
-- adding an endpoint is adding a line here (and its action below).
--
-- A {name} in a template matches one non-empty, percent-decoded path
-- segment, handed to the action as ctx.params.name. The handler applies
-- the rules of each area before the action runs:
--   /v1/...          the API: {app_id} must name an app (404 app_not_found)
--                    and the request carry its key (401); {user_id} must name
--                    one of its users (404 user_not_found). Requests are
--                    counted in the statistics and take queued faults.
--   /__emulator/...  the admin API: no key, never counted or faulted; a POST
--                    body must be a JSON object or empty (ctx.body).
--
-- An action gets ctx = { state, req, params, app, user, body } and returns a
-- response (reply.lua).
local json = require("passage.emulator.json")
local store = require("passage.emulator.store")
local render = require("passage.emulator.render")
local validate = require("passage.emulator.validate")
local listing = require("passage.emulator.listing")
local faults = require("passage.emulator.faults")
local seed = require("passage.emulator.seed")
local reply = require("passage.emulator.reply")

local invalid = reply.invalid

-- Renders a changed user and only then stores it (a new user when old is
-- nil), so a user that cannot be rendered is never stored. Returns the
-- rendered {"user": ...} body.
local function commit(app, old, new)
  local body = render.user_response(new)
  render.item(new)
  if old == nil then
    store.insert(app, new)
  elseif new ~= old then
    store.replace(app, old, new)
  end
  return body
end

-- ---- the API ----------------------------------------------------------------

local function list_users(ctx)
  local r, msg = listing.parse(ctx.req.query, ctx.state.clock())
  if not r then return invalid(msg) end
  return reply.json(200, listing.respond(ctx.app, r))
end

local function create_user(ctx)
  local body, msg = validate.user_body(ctx.req.body, false)
  if not body then return invalid(msg) end
  local u
  u, msg = ctx.state:new_user(ctx.app, body)
  if not u then return invalid(msg) end
  return reply.json(201, commit(ctx.app, nil, u))
end

local function get_user(ctx)
  return reply.json(200, render.user_response(ctx.user))
end

local function update_user(ctx)
  local body, msg = validate.user_body(ctx.req.body, true)
  if not body then return invalid(msg) end
  local changed
  changed, msg = ctx.state:updated_user(ctx.app, ctx.user, body)
  if not changed then return invalid(msg) end
  return reply.json(200, commit(ctx.app, ctx.user, changed))
end

local function delete_user(ctx)
  store.remove(ctx.app, ctx.user)
  return reply.json(200, "")
end

local function activate_user(ctx)
  return reply.json(200, commit(ctx.app, ctx.user, ctx.state:with_status(ctx.user, "active")))
end

local function deactivate_user(ctx)
  return reply.json(200, commit(ctx.app, ctx.user, ctx.state:with_status(ctx.user, "inactive")))
end

local function list_devices(ctx)
  return reply.json(200, render.devices_response(ctx.user))
end

local function delete_device(ctx)
  local device, index = store.find_device(ctx.user, ctx.params.device_id)
  if not device then return reply.error(404, "device_not_found", "Device not found") end
  commit(ctx.app, ctx.user, ctx.state:without_device(ctx.user, index))
  return reply.json(200, "")
end

local function revoke_tokens(ctx)
  store.revoke_tokens(ctx.user)
  return reply.json(200, "")
end

-- ---- the admin API ------------------------------------------------------------

local function stats(ctx)
  return reply.json(200, json.encode(ctx.state.stats))
end

local function reset_stats(ctx)
  ctx.state:reset_stats()
  return stats(ctx)
end

local function reset(ctx)
  local empty = ctx.body.empty
  if empty ~= nil and type(empty) ~= "boolean" then return invalid("empty: must be a boolean") end
  ctx.state:reset(empty == true)
  local names = {}
  for id in pairs(ctx.state.apps) do names[#names + 1] = id end
  table.sort(names)
  return reply.json(200, json.object_with({ ok = true }, { { "apps", json.array(names) } }))
end

local function add_app(ctx)
  local id, key = ctx.body.app_id, ctx.body.api_key
  if type(id) ~= "string" or not id:find("^[%w_%-%.]+$") or #id > 128 then
    return invalid("app_id: must be 1-128 characters of letters, digits, '_', '-', '.'")
  end
  if type(key) ~= "string" or not key:find("^[\33-\126]+$") or #key > 512 then
    return invalid("api_key: must be a non-empty string of printable characters")
  end
  local _, created = ctx.state:add_app(id, key)
  return reply.json(created and 201 or 200, json.encode({ app_id = id, api_key = key }))
end

local function seed_app(ctx)
  local body = ctx.body
  if type(body.app_id) ~= "string" then return invalid("app_id: must be a string") end
  local app = ctx.state.apps[body.app_id]
  if not app then return reply.error(404, "app_not_found", "App not found") end
  local count = body.count
  if not validate.is_integer(count) or count < 0 or count > 2000000 then
    return invalid("count: must be an integer 0..2000000")
  end
  local s = body.seed
  if s ~= nil and not (validate.is_integer(s) and s >= 0 and s < 2 ^ 31) then
    return invalid("seed: must be an integer 0..2147483647")
  end
  local t0 = os.clock()
  seed.run(ctx.state, app, count, s)
  local users = 0
  for _ in pairs(app.users) do users = users + 1 end
  return reply.json(200, json.encode({
    app_id = app.id, created = count, total_users = users,
    seconds = math.floor((os.clock() - t0) * 1000 + 0.5) / 1000,
  }))
end

local function describe_faults(ctx)
  return reply.json(200, faults.describe(ctx.state.faults))
end

local function set_faults(ctx)
  local ok, msg = faults.configure(ctx.state.faults, ctx.body)
  if not ok then return invalid(msg) end
  return describe_faults(ctx)
end

return {
  { "GET", "/v1/apps/{app_id}/users", list_users },
  { "POST", "/v1/apps/{app_id}/users", create_user },
  { "GET", "/v1/apps/{app_id}/users/{user_id}", get_user },
  { "PATCH", "/v1/apps/{app_id}/users/{user_id}", update_user },
  { "DELETE", "/v1/apps/{app_id}/users/{user_id}", delete_user },
  { "PATCH", "/v1/apps/{app_id}/users/{user_id}/activate", activate_user },
  { "PATCH", "/v1/apps/{app_id}/users/{user_id}/deactivate", deactivate_user },
  { "GET", "/v1/apps/{app_id}/users/{user_id}/devices", list_devices },
  { "DELETE", "/v1/apps/{app_id}/users/{user_id}/devices/{device_id}", delete_device },
  { "DELETE", "/v1/apps/{app_id}/users/{user_id}/tokens", revoke_tokens },

  { "GET", "/__emulator/stats", stats },
  { "POST", "/__emulator/stats/reset", reset_stats },
  { "POST", "/__emulator/reset", reset },
  { "POST", "/__emulator/apps", add_app },
  { "POST", "/__emulator/seed", seed_app },
  { "GET", "/__emulator/faults", describe_faults },
  { "POST", "/__emulator/faults", set_faults },
}
