-- The emulator over real HTTP (nginx + Lua), through spec/support/emulator.lua.
local cjson = require("cjson")
local socket = require("socket")
local emu = require("support.emulator")

local AUTH = { authorization = "Bearer test_key" }

local function api(method, path, opts)
  opts = opts or {}
  return emu.request_json(emu.url() .. path, {
    method = method, headers = opts.headers or AUTH, body = opts.body, json = opts.json,
  })
end

local function create(email, phone)
  local status, body = api("POST", "/apps/test_app/users", { json = { email = email, phone = phone } })
  assert.are.equal(201, status)
  return body.user
end

local function user_path(id) return "/v1/apps/test_app/users/" .. id end

before_each(function()
  emu.reset()
end)

describe("emulator over HTTP: endpoints", function()
  it("serves every user operation with the spec's statuses", function()
    local status, body, headers = api("POST", "/apps/test_app/users",
      { json = { email = "Ada@Example.com", user_metadata = { plan = "pro" } } })
    assert.are.equal(201, status)
    assert.are.equal("application/json", headers["content-type"])
    local id = body.user.id
    assert.are.equal("ada@example.com", body.user.email)

    status, body = api("GET", "/apps/test_app/users/" .. id)
    assert.are.equal(200, status)
    assert.are.equal(id, body.user.id)

    status, body = api("PATCH", "/apps/test_app/users/" .. id, { json = { phone = "+15005550007" } })
    assert.are.equal(200, status)
    assert.are.equal("+15005550007", body.user.phone)
    assert.are.equal("pro", body.user.user_metadata.plan)

    status, body = api("PATCH", "/apps/test_app/users/" .. id .. "/deactivate")
    assert.are.equal(200, status)
    assert.are.equal("inactive", body.user.status)
    status, body = api("PATCH", "/apps/test_app/users/" .. id .. "/activate")
    assert.are.equal(200, status)
    assert.are.equal("active", body.user.status)

    local raw, ignored, resp_headers
    status, body, resp_headers, raw = api("GET", "/apps/test_app/users/" .. id .. "/devices")
    assert.are.equal("application/json", resp_headers["content-type"])
    assert.are.equal(200, status)
    assert.are.same({}, body.devices)
    assert.are.equal('{"devices":[]}', raw)

    status, ignored, resp_headers, raw = api("DELETE", "/apps/test_app/users/" .. id .. "/tokens")
    assert.are.equal("0", resp_headers["content-length"])
    assert.are.equal(200, status)
    assert.is_nil(ignored)
    assert.are.equal("", raw)

    status, body = api("GET", "/apps/test_app/users?limit=1")
    assert.are.equal(200, status)
    assert.are.equal(1, body.total_users)
    assert.are.equal(id, body.users[1].id)

    status, ignored, resp_headers, raw = api("DELETE", "/apps/test_app/users/" .. id)
    assert.are.equal(200, status)
    assert.is_nil(ignored)
    assert.are.equal("0", resp_headers["content-length"])
    assert.are.equal("", raw)
    status, body = api("GET", "/apps/test_app/users/" .. id)
    assert.are.equal(404, status)
    assert.are.equal("user_not_found", body.code)
  end)

  it("deletes a device of a seeded user", function()
    emu.seed("test_app", 300, 5)
    local _, page = api("GET", "/apps/test_app/users?limit=500&login_count=gt:0")
    local target, device
    for _, u in ipairs(page.users) do
      local _, d = api("GET", "/apps/test_app/users/" .. u.id .. "/devices")
      if #d.devices > 0 then
        target, device = u, d.devices[1]
        break
      end
    end
    assert.is_truthy(device, "some seeded user has a device")
    local status = api("DELETE", "/apps/test_app/users/" .. target.id .. "/devices/" .. device.id)
    assert.are.equal(200, status)
    local body
    status, body = api("DELETE", "/apps/test_app/users/" .. target.id .. "/devices/" .. device.id)
    assert.are.equal(404, status)
    assert.are.equal("device_not_found", body.code)
  end)

  it("refuses bad keys, unknown apps and bad input with JSON errors", function()
    local status, body = api("GET", "/apps/test_app/users", { headers = {} })
    assert.are.equal(401, status)
    assert.are.equal("invalid_access_token", body.code)
    status, body = api("GET", "/apps/test_app/users", { headers = { authorization = "Bearer nope" } })
    assert.are.equal(401, status)
    assert.are.equal("invalid_access_token", body.code)
    status, body = api("GET", "/apps/ghost/users")
    assert.are.equal(404, status)
    assert.are.equal("app_not_found", body.code)
    status, body = api("POST", "/apps/test_app/users", { body = '{"email": ' })
    assert.are.equal(400, status)
    assert.are.equal("invalid_request", body.code)
    status, body = api("GET", "/apps/test_app/users?limit=501")
    assert.are.equal(400, status)
    assert.is_truthy(body.error:find("^limit:"))
  end)

  it("answers hostile requests with 4xx JSON, never HTML or a 500", function()
    local cases = {
      { "GET", "/v1/apps/test_app/users/..%2Fx", nil, 404 },
      { "GET", "/v1/apps/test_app/users/../../../etc/passwd", nil, 404 },
      { "GET", "/%zz", nil, 400 },
      { "GET", "/" .. string.rep("a", 20000), nil, 414 },
      { "POST", "/v1/apps/test_app/users", string.rep("x", 2 * 1024 * 1024), 413 },
      { "POST", "/v1/apps/test_app/users", string.rep("[", 100000), 400 },
      { "GET", "/__emulator/../v1/apps/test_app/users", nil, 404 },
      { "DELETE", "/v1/apps/test_app/users", nil, 405 },
    }
    for _, c in ipairs(cases) do
      local r = emu.raw(c[1], c[2], { headers = AUTH, body = c[3] })
      assert.are.equal(c[4], r.status, c[2]:sub(1, 60))
      local decoded = cjson.decode(r.body)
      assert.are.equal("string", type(decoded.code), c[2]:sub(1, 60))
      assert.are.equal("string", type(decoded.error))
    end
  end)
end)

describe("emulator over HTTP: what it cannot store or render", function()
  local function read_log()
    local f = io.open(emu.error_log(), "rb")
    if not f then return "" end
    local text = f:read("*a")
    f:close()
    return text
  end

  it("refuses non-finite metadata numbers with 400 naming the field, storing nothing", function()
    local u = create("finite@example.com")
    for _, literal in ipairs({ "1e400", "-1e999" }) do
      local status, body = api("POST", "/apps/test_app/users",
        { body = '{"email":"inf@example.com","user_metadata":{"big":' .. literal .. '}}' })
      assert.are.equal(400, status, literal)
      assert.are.equal("invalid_request", body.code)
      assert.are.equal("user_metadata.big: must be a finite number", body.error)
      status, body = api("PATCH", "/apps/test_app/users/" .. u.id,
        { body = '{"user_metadata":{"big":' .. literal .. '}}' })
      assert.are.equal(400, status, literal)
      assert.are.equal("user_metadata.big: must be a finite number", body.error)
    end
    -- every page, filter and get still answers, and shows nothing of the refused calls
    for _, query in ipairs({ "limit=1", "limit=500", "status=active", "identifier=inf@example.com",
      "order_by=updated_at:DESC", "page=2&limit=1" }) do
      local status = api("GET", "/apps/test_app/users?" .. query)
      assert.are.equal(200, status, query)
    end
    local _, page = api("GET", "/apps/test_app/users?identifier=inf@example.com")
    assert.are.equal(0, page.total_users)
    local status, body = api("GET", "/apps/test_app/users/" .. u.id)
    assert.are.equal(200, status)
    assert.are.equal(cjson.null, body.user.user_metadata)
    local client = emu.client()
    local seen = 0
    for _ in require("passage.paginator").users(client, "test_app", { limit = 1 }) do seen = seen + 1 end
    client:close()
    assert.are.equal(1, seen)
  end)

  it("answers an internal failure with a 500 naming no file, logged in nginx's error log", function()
    local u = create("crash@example.com")
    local before = #read_log()
    emu.faults({ next = { { crash = true } } })
    local r = emu.raw("GET", user_path(u.id), { headers = AUTH })
    assert.are.equal(500, r.status)
    assert.are.same({ code = "internal_server_error", error = "internal error in the emulator" },
      cjson.decode(r.body))
    assert.is_nil(r.body:find("/", 1, true))
    local logged = read_log():sub(before + 1)
    assert.matches("injected crash", logged, 1, true)
    assert.matches("GET /apps/{app_id}/users/{user_id}", logged, 1, true)
    assert.are.equal(200, emu.raw("GET", user_path(u.id), { headers = AUTH }).status)
  end)
end)

describe("emulator over HTTP: admin", function()
  it("adds apps with their own keys and resets", function()
    emu.add_app("second", "second_key")
    local status = api("GET", "/apps/second/users", { headers = { authorization = "Bearer second_key" } })
    assert.are.equal(200, status)
    assert.are.equal(401, (api("GET", "/apps/second/users")))
    emu.reset(true)
    assert.are.equal(404, (api("GET", "/apps/test_app/users")))
    emu.reset()
    assert.are.equal(200, (api("GET", "/apps/test_app/users")))
  end)

  it("escapes an app id of dots in list links, which still lead back to the app", function()
    for _, id in ipairs({ "..", "." }) do
      emu.add_app(id, "dots_key")
      local escaped = id:gsub("%.", "%%2E")
      local headers = { authorization = "Bearer dots_key" }
      local status, body = api("GET", "/apps/" .. escaped .. "/users?limit=1", { headers = headers })
      assert.are.equal(200, status)
      for _, name in ipairs({ "first", "last", "self" }) do
        local href = body._links[name].href
        assert.are.equal("/v1/apps/" .. escaped .. "/users?", href:match("^[^?]*%?"), name)
        assert.are.equal(200, (emu.request_json(emu.root_url() .. href, { headers = headers })))
      end
    end
  end)

  it("counts requests per route and status, and clears on reset", function()
    local u = create("count@example.com")
    api("GET", "/apps/test_app/users/" .. u.id)
    api("GET", "/apps/test_app/users/" .. u.id)
    api("GET", "/apps/test_app/users/missing")
    local stats = emu.stats()
    assert.are.equal(4, stats.total)
    assert.are.equal(2, emu.count(stats, "GET /apps/{app_id}/users/{user_id}", 200))
    assert.are.equal(1, emu.count(stats, "GET /apps/{app_id}/users/{user_id}", 404))
    assert.are.equal(1, emu.count(stats, "POST /apps/{app_id}/users", 201))
    emu.reset_stats()
    assert.are.equal(0, emu.stats().total)
    api("GET", "/apps/test_app/users")
    emu.reset()
    assert.are.equal(0, emu.stats().total)
  end)

  it("seeds 100,000 users and pages through them", function()
    local t0 = socket.gettime()
    local res = emu.seed("test_app", 100000, 1)
    local seeded = socket.gettime() - t0
    assert.are.equal(100000, res.created)
    t0 = socket.gettime()
    local _, first = api("GET", "/apps/test_app/users?limit=500")
    local first_page = socket.gettime() - t0
    assert.are.equal(100000, first.total_users)
    assert.are.equal(500, #first.users)
    local cb = string.format("%d", first.created_before)
    t0 = socket.gettime()
    local seen = 0
    for page = 2, 20 do
      local status, body = api("GET", "/apps/test_app/users?limit=500&page=" .. page
        .. "&created_before=" .. cb)
      assert.are.equal(200, status)
      seen = seen + #body.users
    end
    local pages = socket.gettime() - t0
    assert.are.equal(19 * 500, seen)
    print(string.format("\n  seed 100000 users: %.2f s; first page (filter+sort): %.3f s; "
      .. "19 cached pages: %.3f s", seeded, first_page, pages))
  end)

  it("is reachable only through the admin location (loopback check in nginx)", function()
    local r = emu.raw("GET", "/__emulator/stats")
    assert.are.equal(200, r.status)
    local conf = io.open((emu.error_log():gsub("logs/error%.log$", "nginx.conf")))
    if conf then
      local text = conf:read("*a")
      conf:close()
      assert.is_truthy(text:find("allow 127.0.0.1;", 1, true))
    end
  end)
end)

describe("emulator over HTTP: faults on the wire", function()
  local u
  before_each(function()
    u = create("fault@example.com", "+15005550009")
  end)

  it("replies an injected status with Retry-After, without running the handler", function()
    emu.faults({ next = { { status = 503, retry_after = "2", count = 2 }, { status = 429 } } })
    local r = emu.raw("POST", "/v1/apps/test_app/users",
      { headers = AUTH, body = '{"email":"never@example.com"}' })
    assert.are.equal(503, r.status)
    assert.are.equal("2", r.headers["retry-after"])
    assert.are.equal("internal_server_error", cjson.decode(r.body).code)
    assert.are.equal(503, emu.raw("GET", user_path(u.id), { headers = AUTH }).status)
    r = emu.raw("GET", user_path(u.id), { headers = AUTH })
    assert.are.equal(429, r.status)
    assert.are.equal("rate_limited", cjson.decode(r.body).code)
    assert.are.equal(200, emu.raw("GET", user_path(u.id), { headers = AUTH }).status)
    local _, list = api("GET", "/apps/test_app/users?identifier=never@example.com")
    assert.are.equal(0, list.total_users)
  end)

  it("drops the connection mid-body, after running the handler", function()
    emu.faults({ next = { { drop = true } } })
    local r = emu.raw("POST", "/v1/apps/test_app/users",
      { headers = AUTH, body = '{"email":"dropped@example.com"}' })
    assert.are.equal(201, r.status)
    assert.is_false(r.complete)
    assert.is_true(#r.body > 0 and #r.body < r.content_length)
    local _, list = api("GET", "/apps/test_app/users?identifier=dropped@example.com")
    assert.are.equal(1, list.total_users)
  end)

  it("sends headers only", function()
    emu.faults({ next = { { headers_only = true } } })
    local r = emu.raw("GET", user_path(u.id), { headers = AUTH })
    assert.are.equal(200, r.status)
    assert.is_true(r.content_length > 0)
    assert.are.equal("", r.body)
  end)

  it("truncates the JSON body with a matching Content-Length", function()
    emu.faults({ next = { { truncate = true } } })
    local r = emu.raw("GET", user_path(u.id), { headers = AUTH })
    assert.are.equal(200, r.status)
    assert.is_true(r.complete)
    assert.is_true(#r.body > 10)
    assert.is_false((pcall(cjson.decode, r.body)))
    local full = emu.raw("GET", user_path(u.id), { headers = AUTH })
    assert.are.equal(math.floor(#full.body / 2), #r.body)
  end)

  it("trickles the body slowly", function()
    emu.faults({ next = { { trickle_ms = 30, chunk = 100 } } })
    local r = emu.raw("GET", user_path(u.id), { headers = AUTH })
    assert.is_true(r.complete)
    local pauses = math.ceil(#r.body / 100) - 1
    assert.is_true(r.elapsed >= pauses * 0.03 * 0.8, "took " .. r.elapsed)
    assert.are.equal(u.id, cjson.decode(r.body).user.id)
  end)

  it("adds latency to every request, overlapping concurrent ones", function()
    emu.faults({ latency_ms = 200 })
    local conns = {}
    local t0 = socket.gettime()
    for i = 1, 4 do
      local c = assert(socket.connect("127.0.0.1", emu.port()))
      c:send("GET " .. user_path(u.id) .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        .. "Authorization: Bearer test_key\r\n\r\n")
      conns[i] = c
    end
    for _, c in ipairs(conns) do
      local line = c:receive("*l")
      assert.is_truthy(line:find(" 200 "))
      c:close()
    end
    local elapsed = socket.gettime() - t0
    assert.is_true(elapsed >= 0.19, "latency applied: " .. elapsed)
    assert.is_true(elapsed < 0.6, "requests overlap: " .. elapsed)
    emu.faults({ latency_ms = 0 })
    t0 = socket.gettime()
    emu.raw("GET", user_path(u.id), { headers = AUTH })
    assert.is_true(socket.gettime() - t0 < 0.15)
  end)

  it("replaces bodies: not_json, html, empty, deep, invalid_utf8, wrong_types, huge", function()
    emu.faults({ next = {
      { body = "not_json" }, { body = "html", status = 502 }, { body = "empty" }, { body = "deep" },
      { body = "invalid_utf8" }, { body = "wrong_types" }, { body = "huge" },
    } })
    local function get() return emu.raw("GET", user_path(u.id), { headers = AUTH }) end
    local r = get()
    assert.are.equal(200, r.status)
    assert.is_false((pcall(cjson.decode, r.body)))
    r = get()
    assert.are.equal(502, r.status)
    assert.is_truthy(r.body:find("<html>", 1, true))
    assert.is_truthy(r.headers["content-type"]:find("text/html", 1, true))
    r = get()
    assert.are.equal(200, r.status)
    assert.are.equal("", r.body)
    assert.are.equal(0, r.content_length)
    r = get()
    assert.are.equal(200000, #r.body)
    assert.are.equal("[[[", r.body:sub(1, 3))
    r = get()
    assert.is_truthy(r.body:find("[\128-\255]"))
    local utf8_ok = (utf8 and utf8.len(r.body)) ~= nil -- luacheck: ignore 113
    assert.is_false(utf8_ok)
    r = get()
    local wrong = cjson.decode(r.body)
    assert.are.equal("string", type(wrong.user.login_count))
    assert.are.equal("number", type(wrong.user.id))
    r = get()
    assert.is_true(r.complete)
    assert.is_true(#r.body > 30 * 1024 * 1024)
    assert.are.equal("table", type(cjson.decode(r.body)))
    assert.are.equal(200, get().status)
  end)

  it("reports the fault state and clears it", function()
    local state = emu.faults({ latency_ms = 5, next = { { truncate = true, count = 3 } } })
    assert.are.equal(5, state.latency_ms)
    assert.are.equal(3, state.next[1].count)
    emu.raw("GET", user_path(u.id), { headers = AUTH })
    assert.are.equal(2, emu.faults({}).next[1].count)
    state = emu.faults({ clear = true })
    assert.are.equal(0, state.latency_ms)
    assert.are.same({}, state.next)
    -- admin requests are never faulted
    emu.faults({ next = { { status = 500 } } })
    assert.are.equal(200, emu.raw("GET", "/__emulator/stats").status)
    assert.are.equal(500, emu.raw("GET", user_path(u.id), { headers = AUTH }).status)
  end)
end)
