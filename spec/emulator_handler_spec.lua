-- The emulator's request logic, called directly (no server, no sockets).
local cjson = require("cjson")
local store = require("passage.emulator.store")
local handler = require("passage.emulator.handler")
local ts = require("passage.emulator.timestamp")

local NOW = 1731923000.25 -- 2024-11-18T09:43:20.25Z

local state
local clock = NOW

local function call(method, path, opts)
  opts = opts or {}
  local headers = opts.headers or { authorization = "Bearer " .. (opts.key or "test_key") }
  local resp = handler.handle(state, {
    method = method, path = path, query = opts.query, headers = headers, body = opts.body,
  })
  local ok, decoded = pcall(cjson.decode, resp.body)
  return resp.status, ok and decoded or nil, resp
end

local function users_path(rest) return "/v1/apps/test_app/users" .. (rest or "") end

local function create(fields)
  local status, body = call("POST", users_path(), { body = cjson.encode(fields) })
  assert.are.equal(201, status, body and body.error)
  return body.user
end

local function list(query)
  return call("GET", users_path(), { query = query })
end

local function admin(path, tbl)
  return call("POST", "/__emulator/" .. path, { body = tbl and cjson.encode(tbl) or nil })
end

local USER_FIELDS = {
  created_at = "string", email = "string", email_verified = "boolean", external_id = "string",
  id = "string", last_login_at = "string", login_count = "number", phone = "string",
  phone_verified = "boolean", recent_events = "table", social_connections = "table",
  status = "string", updated_at = "string", webauthn = "boolean", webauthn_devices = "table",
  webauthn_types = "table",
}

local function assert_user_info(u, raw)
  for k, t in pairs(USER_FIELDS) do assert.are.equal(t, type(u[k]), k) end
  assert.is_true(u.user_metadata == cjson.null or type(u.user_metadata) == "table")
  assert.is_truthy(ts.parse(u.created_at), "created_at layout")
  if raw then
    assert.is_truthy(raw:find('"recent_events":%['), "recent_events is an array")
    assert.is_truthy(raw:find('"webauthn_devices":%['), "webauthn_devices is an array")
    assert.is_truthy(raw:find('"webauthn_types":%['), "webauthn_types is an array")
    assert.is_truthy(raw:find('"social_connections":{'), "social_connections is an object")
  end
end

before_each(function()
  clock = NOW
  state = store.new({ clock = function() return clock end })
end)

describe("emulator handler: users", function()
  it("creates a user with 201, lower-casing the email, every UserInfo field present", function()
    local status, body, resp = call("POST", users_path(),
      { body = '{"email":"Ada@Example.COM","phone":"+14155552671","user_metadata":{"plan":"pro"}}' })
    assert.are.equal(201, status)
    local u = body.user
    assert_user_info(u, resp.body)
    assert.are.equal("ada@example.com", u.email)
    assert.are.equal("+14155552671", u.phone)
    assert.are.equal("active", u.status)
    assert.are.equal(0, u.login_count)
    assert.are.equal(24, #u.id)
    assert.are.equal("pro", u.user_metadata.plan)
    assert.are.equal("0001-01-01T00:00:00Z", u.last_login_at)
    assert.are.equal("2024-11-18T09:43:20.250000Z", u.created_at)
    assert.are.equal("application/json", resp.headers["Content-Type"])
  end)

  it("renders a user without metadata with user_metadata null", function()
    local _, _, resp = call("POST", users_path(), { body = '{"phone":"+15005550007"}' })
    assert.is_truthy(resp.body:find('"user_metadata":null', 1, true))
  end)

  it("gets, updates (metadata merged, null removes), activates, deactivates, deletes", function()
    local u = create({ email = "grace@example.com", user_metadata = { a = "1", b = true } })
    local status, body, resp = call("GET", users_path("/" .. u.id))
    assert.are.equal(200, status)
    assert_user_info(body.user, resp.body)
    assert.are.same(u, body.user)

    clock = NOW + 5
    status, body = call("PATCH", users_path("/" .. u.id),
      { body = '{"email":"GRACE2@example.com","phone":"+15005550012","user_metadata":{"a":null,"c":3}}' })
    assert.are.equal(200, status)
    assert.are.equal("grace2@example.com", body.user.email)
    assert.are.equal("+15005550012", body.user.phone)
    assert.are.same({ b = true, c = 3 }, body.user.user_metadata)
    assert.are.equal("2024-11-18T09:43:25.250000Z", body.user.updated_at)
    assert.are.equal(u.created_at, body.user.created_at)

    status, body = call("PATCH", users_path("/" .. u.id), { body = '{"user_metadata":null}' })
    assert.are.equal(200, status)
    assert.are.equal(cjson.null, body.user.user_metadata)

    status, body = call("PATCH", users_path("/" .. u.id .. "/deactivate"))
    assert.are.equal(200, status)
    assert.are.equal("inactive", body.user.status)
    status, body = call("PATCH", users_path("/" .. u.id .. "/activate"))
    assert.are.equal(200, status)
    assert.are.equal("active", body.user.status)

    local raw
    status, body, raw = call("DELETE", users_path("/" .. u.id))
    assert.are.equal(200, status)
    assert.are.equal("", raw.body)
    assert.is_nil(body)
    status, body = call("GET", users_path("/" .. u.id))
    assert.are.equal(404, status)
    assert.are.same({ code = "user_not_found", error = "User not found" }, body)
    -- the identifiers are free again
    create({ email = "grace2@example.com", phone = "+15005550012" })
  end)

  it("moves a changed identifier in the indexes: the old one is free, the new one taken", function()
    local u = create({ email = "before@example.com", phone = "+15005550001" })
    local status = call("PATCH", users_path("/" .. u.id),
      { body = '{"email":"after@example.com","phone":"+15005550002"}' })
    assert.are.equal(200, status)
    local _, body = call("POST", users_path(), { body = '{"email":"after@example.com"}' })
    assert.are.equal("email: already in use", body.error)
    _, body = call("POST", users_path(), { body = '{"phone":"+15005550002"}' })
    assert.are.equal("phone: already in use", body.error)
    create({ email = "before@example.com", phone = "+15005550001" })
    local _, page = list("identifier=after@example.com")
    assert.are.equal(u.id, page.users[1].id)
  end)

  it("lists, deletes devices and revokes tokens", function()
    admin("seed", { app_id = "test_app", count = 200, seed = 3 })
    local with_device
    for _, u in pairs(state.apps.test_app.users) do
      if #u.devices > 0 then
        with_device = u
        break
      end
    end
    assert.is_truthy(with_device, "seeding gives some users devices")
    local status, body, resp = call("GET", users_path("/" .. with_device.id .. "/devices"))
    assert.are.equal(200, status)
    local d = body.devices[1]
    for _, k in ipairs({ "created_at", "cred_id", "friendly_name", "id", "last_login_at", "type",
      "updated_at" }) do
      assert.are.equal("string", type(d[k]), k)
    end
    assert.are.equal("number", type(d.usage_count))
    assert.are.equal("table", type(d.icons))
    assert.is_truthy(resp.body:find('"dark":null', 1, true))
    local n = #body.devices

    status = call("DELETE", users_path("/" .. with_device.id .. "/devices/nope"))
    assert.are.equal(404, status)
    local _, err = call("DELETE", users_path("/" .. with_device.id .. "/devices/nope"))
    assert.are.equal("device_not_found", err.code)

    local raw
    status, _, raw = call("DELETE", users_path("/" .. with_device.id .. "/devices/" .. d.id))
    assert.are.equal(200, status)
    assert.are.equal("", raw.body)
    _, body = call("GET", users_path("/" .. with_device.id .. "/devices"))
    assert.are.equal(n - 1, #body.devices)

    local u = create({ email = "dev@example.com" })
    local _, _, r = call("GET", users_path("/" .. u.id .. "/devices"))
    assert.are.equal('{"devices":[]}', r.body)

    status, _, raw = call("DELETE", users_path("/" .. u.id .. "/tokens"))
    assert.are.equal(200, status)
    assert.are.equal("", raw.body)
    assert.are.equal(404, (call("DELETE", users_path("/nobody/tokens"))))
  end)
end)

describe("emulator handler: errors", function()
  it("answers 401 for a missing or wrong key, 404 for an unknown app first", function()
    local status, body = call("GET", users_path("/x"), { headers = {} })
    assert.are.equal(401, status)
    assert.are.equal("invalid_access_token", body.code)
    assert.are.equal("string", type(body.error))
    assert.are.equal(401, (call("GET", users_path("/x"), { key = "wrong" })))
    assert.are.equal(401, (call("GET", users_path("/x"), { headers = { authorization = "test_key" } })))
    status, body = call("GET", "/v1/apps/other/users/x", { key = "wrong" })
    assert.are.equal(404, status)
    assert.are.equal("app_not_found", body.code)
    -- scheme is case-insensitive
    assert.are.equal(404, (call("GET", users_path("/x"),
      { headers = { authorization = "bearer test_key" } })))
  end)

  it("decodes path segments once", function()
    local u = create({ email = "x@example.com" })
    assert.are.equal(200, (call("GET", users_path("/" .. u.id:sub(1, 3) .. "%" ..
      string.format("%02X", u.id:byte(4)) .. u.id:sub(5)))))
    local status, body = call("GET", users_path("/..%2Fx"))
    assert.are.equal(404, status)
    assert.are.equal("user_not_found", body.code)
    assert.are.equal(404, (call("GET", users_path("/%252F"))))
  end)

  it("answers unknown paths with 404 not_found and wrong methods with 405", function()
    for _, p in ipairs({ "/", "/v1", "/v1/apps/test_app", "/v1/apps/test_app/users/x/y/z/w",
      "/v1/apps//users", "/v1/apps/test_app/users/", "/v2/apps/test_app/users", "/%zz" }) do
      local status, body = call("GET", p)
      assert.are.equal(404, status, p)
      assert.are.equal("not_found", body.code, p)
    end
    local status, body, resp = call("PUT", users_path())
    assert.are.equal(405, status)
    assert.are.equal("method_not_allowed", body.code)
    assert.are.equal("GET, POST", resp.headers.Allow)
  end)

  it("serves every route of the route table, each counted under its own name", function()
    local u = create({ email = "routes@example.com" })
    local served = 0
    for _, route in ipairs(require("passage.emulator.routes")) do
      local method, template = route[1], route[2]
      local path = template:gsub("{app_id}", "test_app"):gsub("{user_id}", u.id)
        :gsub("{device_id}", "no_device")
      local status, body = call(method, path, { body = method == "GET" and nil or "{}" })
      assert.are_not.equal(405, status, method .. " " .. path)
      assert.is_false(status == 404 and body.code == "not_found", method .. " " .. path)
      if template:find("^/v1/") then
        local _, stats = call("GET", "/__emulator/stats")
        local name = method .. " " .. template:gsub("^/v1", "")
        assert.are.equal(1, stats.routes[name][tostring(status)], name)
        served = served + 1
      end
    end
    assert.are.equal(10, served)
  end)

  local bad_bodies = {
    { nil, "body" }, { "", "body" }, { "{", "body" }, { "[]", "body" }, { "null", "body" },
    { '"x"', "body" }, { "{}", "identifier" }, { '{"email":""}', "identifier" },
    { '{"email":5}', "email" }, { '{"phone":true}', "phone" }, { '{"email":null}', "email" },
    { '{"email":"nope"}', "email" }, { '{"email":"a@b"}', "email" },
    { '{"email":"a b@example.com"}', "email" }, { '{"phone":"14155552671"}', "phone" },
    { '{"phone":"+0123456789"}', "phone" }, { '{"phone":"+1234567890123456"}', "phone" },
    { '{"email":"a@example.com","name":"x"}', "name" },
    { '{"email":"a@example.com","user_metadata":[1]}', "user_metadata" },
    { '{"email":"a@example.com","user_metadata":"x"}', "user_metadata" },
    { '{"email":"a@example.com","user_metadata":{"k":{"n":1}}}', "user_metadata.k" },
    { '{"email":"a@example.com","user_metadata":{"k":"\255"}}', "user_metadata.k" },
    { '{"email":"a@example.com","user_metadata":{"big":1e400}}', "user_metadata.big" },
    { '{"email":"a@example.com","user_metadata":{"small":-1e999}}', "user_metadata.small" },
    { string.rep("[", 5000) .. string.rep("]", 5000), "body" },
  }
  for _, case in ipairs(bad_bodies) do
    it("refuses create body " .. tostring(case[1]):sub(1, 40) .. " naming " .. case[2], function()
      local status, body = call("POST", users_path(), { body = case[1] })
      assert.are.equal(400, status)
      assert.are.equal("invalid_request", body.code)
      assert.are.equal(case[2] .. ":", body.error:match("^[%w_%.]+:"))
    end)
  end

  it("refuses duplicate email or phone with 400, also on update", function()
    create({ email = "dup@example.com", phone = "+15005550001" })
    local status, body = call("POST", users_path(), { body = '{"email":"DUP@example.com"}' })
    assert.are.equal(400, status)
    assert.are.equal("email: already in use", body.error)
    status, body = call("POST", users_path(), { body = '{"phone":"+15005550001"}' })
    assert.are.equal(400, status)
    assert.are.equal("phone: already in use", body.error)
    local other = create({ email = "other@example.com" })
    status, body = call("PATCH", users_path("/" .. other.id), { body = '{"phone":"+15005550001"}' })
    assert.are.equal(400, status)
    assert.are.equal("phone: already in use", body.error)
  end)

  it("refuses blank identifiers on update and unknown users before bodies", function()
    local u = create({ email = "u@example.com" })
    local status, body = call("PATCH", users_path("/" .. u.id), { body = '{"phone":""}' })
    assert.are.equal(400, status)
    assert.are.equal("phone: must be a valid E164 number.", body.error)
    status, body = call("PATCH", users_path("/" .. u.id), { body = '{"email":""}' })
    assert.are.equal(400, status)
    assert.are.equal("email: must be a valid email address.", body.error)
    status, body = call("PATCH", users_path("/missing"), { body = "garbage" })
    assert.are.equal(404, status)
    assert.are.equal("user_not_found", body.code)
    -- an empty update is a no-op
    status, body = call("PATCH", users_path("/" .. u.id), { body = "{}" })
    assert.are.equal(200, status)
    assert.are.equal(u.updated_at, body.user.updated_at)
  end)
end)

describe("emulator handler: what it cannot store or render", function()
  it("refuses a non-finite metadata number on update, changing nothing", function()
    local u = create({ email = "finite@example.com", user_metadata = { n = 1 } })
    for _, literal in ipairs({ "1e400", "-1e999" }) do
      local status, body = call("PATCH", users_path("/" .. u.id),
        { body = '{"email":"changed@example.com","user_metadata":{"n":' .. literal .. '}}' })
      assert.are.equal(400, status)
      assert.are.equal("invalid_request", body.code)
      assert.are.equal("user_metadata.n: must be a finite number", body.error)
    end
    local status, body = call("GET", users_path("/" .. u.id))
    assert.are.equal(200, status)
    assert.are.same(u, body.user)
  end)

  -- A clock that reads NaN gives timestamps no response can render: a state
  -- the API cannot otherwise reach, standing in for any rendering failure.
  it("answers what it cannot render with a logged 500, naming no file, storing nothing", function()
    local u = create({ email = "kept@example.com" })
    clock = 0 / 0
    local requests = {
      { "POST", users_path(), '{"email":"new@example.com","phone":"+15005550001"}' },
      { "PATCH", users_path("/" .. u.id), '{"email":"moved@example.com"}' },
      { "PATCH", users_path("/" .. u.id .. "/deactivate") },
    }
    for _, r in ipairs(requests) do
      local status, body, resp = call(r[1], r[2], { body = r[3] })
      assert.are.equal(500, status, r[1] .. " " .. r[2])
      assert.are.equal("internal_server_error", body.code)
      assert.is_nil(resp.body:find(".lua", 1, true), resp.body)
      assert.is_nil(resp.body:find("/", 1, true), resp.body)
      assert.matches("format", resp.log) -- the cause, for the server's error log
    end
    clock = NOW + 1
    local status, body = call("GET", users_path("/" .. u.id))
    assert.are.equal(200, status)
    assert.are.same(u, body.user)
    status, body = list("limit=5")
    assert.are.equal(200, status)
    assert.are.equal(1, body.total_users)
    status, body = list("identifier=moved@example.com")
    assert.are.equal(200, status)
    assert.are.equal(0, body.total_users)
    -- the refused create left neither a user nor its identifiers behind
    create({ email = "new@example.com", phone = "+15005550001" })
    create({ email = "moved@example.com" })
  end)

  it("answers an injected crash with the same 500, changing nothing", function()
    local u = create({ email = "crash@example.com" })
    admin("faults", { next = { { crash = true, count = 2 } } })
    local status, body, resp = call("POST", users_path(), { body = '{"email":"never@example.com"}' })
    assert.are.equal(500, status)
    assert.are.same({ code = "internal_server_error", error = "internal error in the emulator" }, body)
    assert.matches("injected crash", resp.log)
    assert.are.equal(500, (call("DELETE", users_path("/" .. u.id))))
    assert.are.equal(200, (call("GET", users_path("/" .. u.id))))
    local _, page = list("")
    assert.are.equal(1, page.total_users)
    local _, stats = call("GET", "/__emulator/stats")
    assert.are.equal(1, stats.routes["POST /apps/{app_id}/users"]["500"])
  end)
end)

describe("emulator handler: what a fault or an error message carries", function()
  it("refuses fault values no header or JSON body could carry later", function()
    for _, f in ipairs({ { status = 503, retry_after = "1\r\nX-Injected: 1" },
      { status = 503, retry_after = "" }, { status = 503, error = "caf\195" },
      { status = 503, code = string.rep("x", 1025) } }) do
      local status, body = admin("faults", { next = { f } })
      assert.are.equal(400, status)
      assert.matches("^next%[1%]%.%l+", body.error)
    end
    local _, now = admin("faults", {})
    assert.are.same({}, now.next)
  end)

  it("cuts an unknown field's name in an error at a character boundary", function()
    local name = string.rep("a", 63) .. "\195\169" -- the 64-byte cut falls inside the last character
    local status, body, resp = call("POST", users_path(),
      { body = '{"email":"a@example.com","' .. name .. '":1}' })
    assert.are.equal(400, status)
    assert.are.equal(string.rep("a", 63) .. ": unknown field", body.error)
    assert.is_nil(resp.body:find("\195", 1, true))
    status, body = admin("faults", { [name] = 1 })
    assert.are.equal(400, status)
    assert.are.equal(string.rep("a", 63) .. ": unknown field", body.error)
  end)
end)

describe("emulator handler: listing", function()
  local function seed_small()
    -- 5 users at distinct times, statuses and login counts
    local users = {}
    local specs = {
      { "c@example.com", "+15550000003", "active", 3 },
      { "a@example.com", "+15550000001", "inactive", 0 },
      { "e@example.org", "+15550000005", "active", 10 },
      { "b@example.com", "+15550000002", "pending", 0 },
      { "d@example.org", "+15550000004", "active", 3 },
    }
    for i, s in ipairs(specs) do
      clock = NOW - 100 + i
      local u = create({ email = s[1], phone = s[2] })
      local rec = state.apps.test_app.users[u.id]
      rec.status, rec.login_count = s[3], s[4]
      if s[4] > 0 then rec.last_login_us = rec.created_us + 1000000 end
      store.touch(state.apps.test_app, rec)
      users[i] = rec
    end
    clock = NOW
    return users
  end

  local function emails(body)
    local out = {}
    for i, u in ipairs(body.users) do out[i] = u.email end
    return out
  end

  it("returns the ListPaginatedUsersResponse shape with defaults", function()
    seed_small()
    local status, body, resp = list(nil)
    assert.are.equal(200, status)
    assert.are.equal(1, body.page)
    assert.are.equal(20, body.limit)
    assert.are.equal(5, body.total_users)
    assert.are.equal(math.floor(NOW) + 1, body.created_before)
    -- default order: created_at ascending
    assert.are.same({ "c@example.com", "a@example.com", "e@example.org", "b@example.com",
      "d@example.org" }, emails(body))
    for _, k in ipairs({ "first", "last", "next", "previous", "self" }) do
      assert.are.equal("string", type(body._links[k].href), k)
    end
    assert.are.equal("/v1/apps/test_app/users?page=1&limit=20&created_before=1731923001",
      body._links.self.href)
    assert.are.equal("", body._links.next.href)
    assert.are.equal("", body._links.previous.href)
    local item = body.users[1]
    for _, k in ipairs({ "recent_events", "webauthn_devices", "social_connections" }) do
      assert.is_nil(item[k], k .. " is not part of a list item")
    end
    assert.is_truthy(resp.body:find('"users":%['))
  end)

  it("encodes an empty result as users: []", function()
    local _, body, resp = list("status=pending")
    assert.are.equal(0, body.total_users)
    assert.is_truthy(resp.body:find('"users":[]', 1, true))
  end)

  it("pages to the end with consistent links and totals", function()
    seed_small()
    local seen, page = {}, 1
    local created_before
    while true do
      local q = "limit=2&page=" .. page .. (created_before and ("&created_before=" .. created_before) or "")
      local status, body = list(q)
      assert.are.equal(200, status)
      created_before = string.format("%d", body.created_before)
      assert.are.equal(5, body.total_users)
      assert.are.equal("/v1/apps/test_app/users?page=3&limit=2&created_before=" .. created_before,
        body._links.last.href)
      for _, u in ipairs(body.users) do
        assert.is_nil(seen[u.id])
        seen[u.id] = true
      end
      if page > 1 then
        assert.are.equal("/v1/apps/test_app/users?page=" .. (page - 1) .. "&limit=2&created_before="
          .. created_before, body._links.previous.href)
      end
      if body._links.next.href == "" then break end
      page = page + 1
    end
    assert.are.equal(3, page)
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.are.equal(5, n)
    local _, beyond = list("limit=2&page=9")
    assert.are.same({}, beyond.users)
    assert.are.equal("", beyond._links.next.href)
  end)

  it("pins the window with created_before", function()
    local users = seed_small()
    local cb = math.floor(users[3].created_us / 1000000) -- excludes users 3..5
    local _, body = list("created_before=" .. string.format("%d", cb))
    assert.are.equal(2, body.total_users)
    assert.are.equal(cb, body.created_before)
  end)

  it("orders by fields, breaking ties by id", function()
    local users = seed_small()
    local _, body = list("order_by=login_count:DESC")
    assert.are.equal("e@example.org", body.users[1].email)
    local c, d = users[1], users[5] -- both login_count 3
    local first = c.id < d.id and c.email or d.email
    assert.are.equal(first, body.users[2].email)
    _, body = list("order_by=email:desc")
    assert.are.same({ "e@example.org", "d@example.org", "c@example.com", "b@example.com",
      "a@example.com" }, emails(body))
    _, body = list("order_by=status:ASC,email:DESC")
    assert.are.same({ "e@example.org", "d@example.org", "c@example.com", "a@example.com",
      "b@example.com" }, emails(body))
    _, body = list("order_by=id:DESC")
    for i = 2, #body.users do assert.is_true(body.users[i - 1].id > body.users[i].id) end
    _, body = list("order_by=last_login_at:ASC,created_at:DESC")
    assert.are.equal("b@example.com", body.users[1].email) -- never logged in, newest first
  end)

  local filter_cases = {
    { "identifier=a@example.com", { "a@example.com" } },
    { "identifier=A@EXAMPLE.COM", { "a@example.com" } },
    { "identifier=%2B15550000004", { "d@example.org" } },
    { "identifier=ne:a@example.com",
      { "c@example.com", "e@example.org", "b@example.com", "d@example.org" } },
    { "identifier=like:%25.org", { "e@example.org", "d@example.org" } },
    { "identifier=like:%2B1555000000_", { "c@example.com", "a@example.com", "e@example.org",
      "b@example.com", "d@example.org" } },
    { "identifier=not_like:%25.com", { "e@example.org", "d@example.org" } },
    { "identifier=gt:d", { "e@example.org", "d@example.org" } },
    { "status=active", { "c@example.com", "e@example.org", "d@example.org" } },
    { "status=ne:active", { "a@example.com", "b@example.com" } },
    { "status=like:%25act%25", { "c@example.com", "a@example.com", "e@example.org", "d@example.org" } },
    { "status=not_like:%25act%25", { "b@example.com" } },
    { "login_count=3", { "c@example.com", "d@example.org" } },
    { "login_count=gt:2", { "c@example.com", "e@example.org", "d@example.org" } },
    { "login_count=lt:3", { "a@example.com", "b@example.com" } },
    { "login_count=ne:0&status=active", { "c@example.com", "e@example.org", "d@example.org" } },
    { "created_at=gt:2024-11-18T09:41:43.250000Z", { "b@example.com", "d@example.org" } },
    { "created_at=lt:2024-11-18T09:41:43.250000Z", { "c@example.com", "a@example.com" } },
    { "created_at=2024-11-18T09:41:43.250000Z", { "e@example.org" } },
    { "created_at=ne:2024-11-18T09:41:43.250000Z", { "c@example.com", "a@example.com",
      "b@example.com", "d@example.org" } },
    { "last_login_at=gt:2000-01-01T00:00:00.000000Z", { "c@example.com", "e@example.org", "d@example.org" } },
    { "updated_at=lt:2000-01-01T00:00:00.000000Z", {} },
  }
  for _, case in ipairs(filter_cases) do
    it("filters " .. case[1], function()
      seed_small()
      local status, body = list(case[1])
      assert.are.equal(200, status, body and body.error)
      assert.are.same(case[2], emails(body))
      assert.are.equal(#case[2], body.total_users)
    end)
  end

  it("filters by id with every operator", function()
    local users = seed_small()
    local id = users[2].id
    local _, body = list("id=" .. id)
    assert.are.same({ "a@example.com" }, emails(body))
    _, body = list("id=ne:" .. id)
    assert.are.equal(4, body.total_users)
    _, body = list("id=like:" .. id:sub(1, 10) .. "%25")
    assert.are.same({ "a@example.com" }, emails(body))
    _, body = list("id=not_like:" .. id:sub(1, 10) .. "%25")
    assert.are.equal(4, body.total_users)
    _, body = list("id=gt:" .. id .. "&order_by=id:ASC")
    for _, u in ipairs(body.users) do assert.is_true(u.id > id) end
  end)

  it("keeps filters and order in the links", function()
    seed_small()
    local _, body = list("limit=1&status=active&identifier=like:%25.org&order_by=email:DESC")
    assert.are.equal("/v1/apps/test_app/users?page=2&limit=1&created_before=1731923001"
      .. "&order_by=email:DESC&identifier=like:%25.org&status=active", body._links.next.href)
  end)

  local bad_queries = {
    { "page=0", "page" }, { "page=x", "page" }, { "page=-1", "page" }, { "limit=0", "limit" },
    { "limit=501", "limit" }, { "limit=1.5", "limit" }, { "created_before=abc", "created_before" },
    { "order_by=identifier:ASC", "order_by" }, { "order_by=nope:ASC", "order_by" },
    { "order_by=id", "order_by" }, { "order_by=id:UP", "order_by" }, { "order_by=", "order_by" },
    { "login_count=like:3", "login_count" }, { "login_count=abc", "login_count" },
    { "login_count=gt:-1", "login_count" }, { "status=deleted", "status" },
    { "created_at=2024-11-18", "created_at" }, { "created_at=gt:2024-11-18T09:41:42Z", "created_at" },
    { "updated_at=like:2024%25", "updated_at" },
    { "last_login_at=2024-13-01T00:00:00.000000Z", "last_login_at" },
    { "created_at=not_like:x", "created_at" },
  }
  for _, case in ipairs(bad_queries) do
    it("refuses " .. case[1] .. " naming " .. case[2], function()
      local status, body = list(case[1])
      assert.are.equal(400, status)
      assert.are.equal("invalid_request", body.code)
      assert.are.equal(case[2] .. ":", body.error:match("^[%w_]+:"))
    end)
  end

  it("accepts limit 500 and caches until a mutation", function()
    seed_small()
    assert.are.equal(200, (list("limit=500")))
    local app = state.apps.test_app
    assert.are.equal(1, app.lists_n)
    list("limit=500&page=2")
    assert.are.equal(1, app.lists_n, "another page of the same query reuses the cache")
    list("limit=500&created_before=" .. string.format("%d", math.floor(NOW) + 60))
    assert.are.equal(1, app.lists_n, "an anchor after every user reuses the cache")
    list("limit=500&created_before=1")
    assert.are.equal(2, app.lists_n, "an anchor that filters is a new query")
    create({ email = "new@example.com" })
    assert.are.equal(0, app.lists_n)
    local _, body = list(nil)
    assert.are.equal(6, body.total_users)
  end)
end)

describe("emulator handler: admin", function()
  it("adds apps, resets, and resets empty", function()
    local status, body = admin("apps", { app_id = "second", api_key = "k2" })
    assert.are.equal(201, status)
    assert.are.same({ app_id = "second", api_key = "k2" }, body)
    assert.are.equal(200, (call("GET", "/v1/apps/second/users", { key = "k2" })))
    assert.are.equal(401, (call("GET", "/v1/apps/second/users", { key = "test_key" })))
    assert.are.equal(400, (admin("apps", { app_id = "a/b", api_key = "k" })))
    assert.are.equal(400, (admin("apps", { app_id = "ok" })))

    status, body = admin("reset")
    assert.are.equal(200, status)
    assert.are.same({ "test_app" }, body.apps)
    assert.are.equal(404, (call("GET", "/v1/apps/second/users", { key = "k2" })))
    local _, emptied = admin("reset", { empty = true })
    assert.are.same({}, emptied.apps)
    assert.are.equal(404, (call("GET", users_path())))
  end)

  it("seeds deterministic, unique, varied users strictly in the past", function()
    local status, body = admin("seed", { app_id = "test_app", count = 2000, seed = 9 })
    assert.are.equal(200, status)
    assert.are.equal(2000, body.created)
    local app = state.apps.test_app
    local emails, phones, statuses = {}, {}, {}
    local events, devices = 0, 0
    for _, u in pairs(app.users) do
      assert.is_nil(emails[u.email])
      assert.is_nil(phones[u.phone])
      emails[u.email], phones[u.phone] = true, true
      statuses[u.status] = (statuses[u.status] or 0) + 1
      assert.is_true(u.created_us < NOW * 1000000)
      if #u.events > 0 then events = events + 1 end
      if #u.devices > 0 then devices = devices + 1 end
    end
    assert.is_true(statuses.active > 0 and statuses.inactive > 0 and statuses.pending > 0)
    assert.is_true(events > 0 and devices > 0)
    local _, page = list("limit=5&order_by=id:ASC")
    local other = store.new({ clock = function() return NOW end })
    handler.handle(other, { method = "POST", path = "/__emulator/seed",
      body = '{"app_id":"test_app","count":2000,"seed":9}' })
    local again = cjson.decode(handler.handle(other, { method = "GET", path = users_path(),
      query = "limit=5&order_by=id:ASC", headers = { authorization = "Bearer test_key" } }).body)
    assert.are.same(page.users, again.users)
    -- a second seeding of the same app stays unique
    admin("seed", { app_id = "test_app", count = 500, seed = 9 })
    local _, all = list("limit=1")
    assert.are.equal(2500, all.total_users)
    assert.are.equal(404, (admin("seed", { app_id = "nope", count = 1 })))
    assert.are.equal(400, (admin("seed", { app_id = "test_app", count = -1 })))
  end)

  it("counts API requests per route template and status", function()
    local u = create({ email = "s@example.com" })
    call("GET", users_path("/" .. u.id))
    call("GET", users_path("/" .. u.id))
    call("GET", users_path("/nope"))
    call("GET", "/nowhere")
    admin("reset_not_counted")
    local _, stats = call("GET", "/__emulator/stats")
    assert.are.equal(5, stats.total)
    assert.are.equal(2, stats.routes["GET /apps/{app_id}/users/{user_id}"]["200"])
    assert.are.equal(1, stats.routes["GET /apps/{app_id}/users/{user_id}"]["404"])
    assert.are.equal(1, stats.routes["POST /apps/{app_id}/users"]["201"])
    assert.are.equal(1, stats.routes["<unmatched>"]["404"])
    local _, cleared = admin("stats/reset")
    assert.are.equal(0, cleared.total)
  end)

  it("queues faults FIFO with counts and reports the state", function()
    local u = create({ email = "f@example.com" })
    local status, body = admin("faults", { latency_ms = 20, next = {
      { status = 503, retry_after = "1", count = 2 }, { status = 429 }, { truncate = true },
      { body = "wrong_types" }, { drop = true } } })
    assert.are.equal(200, status)
    assert.are.equal(20, body.latency_ms)
    assert.are.equal(5, #body.next)
    local path = users_path("/" .. u.id)
    local s1, b1, r1 = call("GET", path)
    assert.are.equal(503, s1)
    assert.are.equal("internal_server_error", b1.code)
    assert.are.equal("1", r1.headers["Retry-After"])
    assert.are.equal(20, r1.delay_ms)
    assert.are.equal(503, (call("GET", path)))
    local s3, b3 = call("GET", path)
    assert.are.equal(429, s3)
    assert.are.equal("rate_limited", b3.code)
    local _, _, r4 = call("GET", path)
    local full = handler.handle(state, { method = "GET", path = path,
      headers = { authorization = "Bearer test_key" } })
    -- the request above consumed the wrong_types fault; r4 was the truncated one
    assert.are.equal(math.floor(#require("passage.emulator.render").user_response(
      state.apps.test_app.users[u.id]) / 2), #r4.body)
    assert.are.equal(200, full.status)
    assert.are.equal("string", type(cjson.decode(full.body).user.login_count))
    local _, _, r6 = call("GET", path)
    assert.are.equal("drop", r6.fault.kind)
    local _, now = admin("faults", {})
    assert.are.same({}, now.next)
    assert.are.equal(20, now.latency_ms)
    _, now = admin("faults", { clear = true })
    assert.are.equal(0, now.latency_ms)
    assert.are.equal(400, (admin("faults", { next = { { nothing = 1 } } })))
    assert.are.equal(400, (admin("faults", { next = { { body = "weird" } } })))
    assert.are.equal(400, (admin("faults", { latency_ms = -1 })))
  end)

  it("runs the handler under a drop fault but not under a status fault", function()
    admin("faults", { next = { { status = 500 }, { drop = true } } })
    assert.are.equal(500, (call("POST", users_path(), { body = '{"email":"one@example.com"}' })))
    assert.are.equal(0, #state.apps.test_app.all)
    call("POST", users_path(), { body = '{"email":"one@example.com"}' })
    assert.are.equal(1, #state.apps.test_app.all)
  end)
end)
