-- Every call of passage.users against the emulator, over HTTP.
local users = require "passage.users"
local emulator = require "support.emulator"

local APP = "test_app"

local function new_client(opts)
    return emulator.client(opts)
end

local function raises(pattern, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
    return err
end

describe("passage.users", function()
    local client
    before_each(function()
        emulator.reset()
        client = new_client()
    end)
    after_each(function()
        client:close()
    end)

    it("makes an operation of four arguments from its entry alone", function()
        -- passage.users loaded again over an operations table with one more
        -- entry: three path arguments and a fourth for the query.
        local saved_users, saved_ops = package.loaded["passage.users"],
            package.loaded["passage.operations"]
        finally(function()
            package.loaded["passage.users"], package.loaded["passage.operations"] =
                saved_users, saved_ops
        end)
        local ops = {}
        for name, op in pairs(saved_ops) do
            ops[name] = op
        end
        ops.get_user_device_page = {
            method = "GET", path = "/apps/{app_id}/users/{user_id}/devices/{device_id}",
            args = { "app_id", "user_id", "device_id", "params" }, query = "params",
            result = "list", idempotent = true,
        }
        package.loaded["passage.operations"], package.loaded["passage.users"] = ops, nil
        local fresh = require "passage.users"
        local c = fresh.new { api_key = "k", base_url = "http://127.0.0.1:9/v1" }
        finally(function() c:close() end)
        local request = c:check("get_user_device_page", "a p", "u/1", "d?2", { limit = 7 })
        assert.equal("http://127.0.0.1:9/v1/apps/a%20p/users/u%2F1/devices/d%3F2?limit=7",
            request.url)
        assert.is_function(c.get_user_device_page)
        local ok, err = pcall(function() c:check("get_user_device_page", "a", "u", "", {}) end)
        assert.is_false(ok)
        assert.matches("users_spec.lua:%d+: passage.users: device_id", err)
    end)

    it("matches the rockspec version", function()
        local f = assert(io.open("rockspec/passage-lua-" .. users._VERSION .. "-1.rockspec"))
        local text = f:read("*a")
        f:close()
        assert.matches('version = "' .. users._VERSION:gsub("%.", "%%.") .. '%-1"', text)
        assert.equal(users._VERSION, require("passage.core")._VERSION)
    end)

    it("creates, gets, updates, activates, deactivates and deletes a user", function()
        local user = assert(client:create_user(APP, { email = "Ada@Example.com",
            user_metadata = { team = "engines" } }))
        assert.equal("ada@example.com", user.email)
        assert.is_string(user.id)
        if math.type then
            assert.equal("integer", math.type(user.login_count))
        end
        assert.equal("engines", user.user_metadata.team)
        assert.equal(users.array_mt, getmetatable(user.webauthn_devices))
        assert.equal(0, #user.webauthn_devices)
        assert.is_nil(getmetatable(user.social_connections))

        local got = assert(client:get_user(APP, user.id))
        assert.equal(user.id, got.id)

        local updated = assert(client:update_user(APP, user.id, { phone = "+14155552671" }))
        assert.equal("+14155552671", updated.phone)

        local off = assert(client:deactivate_user(APP, user.id))
        assert.equal("inactive", off.status)
        local on = assert(client:activate_user(APP, user.id))
        assert.equal("active", on.status)

        assert.is_true(client:delete_user(APP, user.id))
        local gone, err = client:get_user(APP, user.id)
        assert.is_nil(gone)
        assert.equal("http", err.kind)
        assert.equal(404, err.status)
        assert.equal("user_not_found", err.code)
        assert.equal("get_user", err.operation)
        assert.equal(1, err.attempts)
        assert.matches("HTTP 404 user_not_found", tostring(err))
    end)

    it("lists users with the whole response table", function()
        for i = 1, 3 do
            assert(client:create_user(APP, { email = "u" .. i .. "@example.com" }))
        end
        local page = assert(client:list_paginated_users(APP, { limit = 2, order_by = "id:ASC" }))
        assert.equal(3, page.total_users)
        assert.equal(2, #page.users)
        assert.equal(users.array_mt, getmetatable(page.users))
        assert.equal(1, page.page)
        assert.equal(2, page.limit)
        assert.is_number(page.created_before)
        assert.is_string(page._links.next.href)
        assert.is_true(page.users[1].id < page.users[2].id)

        local filtered = assert(client:list_paginated_users(APP,
            { identifier = { like = "%2@example.com" } }))
        assert.equal(1, filtered.total_users)
        assert.equal("u2@example.com", filtered.users[1].email)
    end)

    it("finds a user by identifier, case-insensitively", function()
        local user = assert(client:create_user(APP, { email = "grace@example.com" }))
        local found = assert(client:get_user_by_identifier(APP, "GRACE@Example.com"))
        assert.equal(user.id, found.id)
        assert.is_table(found.webauthn_devices) -- a full user, from the get
        local none, err = client:get_user_by_identifier(APP, "nobody@example.com")
        assert.is_nil(none)
        assert.equal("not_found", err.kind)
        assert.equal("user_not_found", err.code)
    end)

    it("lists and deletes devices, revokes tokens", function()
        emulator.seed(APP, 20, 7)
        local page = assert(client:list_paginated_users(APP, { limit = 20 }))
        local with_device
        for _, u in ipairs(page.users) do
            local devices = assert(client:list_user_devices(APP, u.id))
            assert.equal(users.array_mt, getmetatable(devices))
            if #devices > 0 then
                with_device = { user = u, devices = devices }
            end
        end
        assert.is_not_nil(with_device, "the seed gives some users a device")
        local d = with_device.devices[1]
        assert.is_string(d.id)
        assert.is_string(d.friendly_name)
        assert.is_true(client:delete_user_device(APP, with_device.user.id, d.id))
        local after = assert(client:list_user_devices(APP, with_device.user.id))
        assert.equal(#with_device.devices - 1, #after)
        local _, err = client:delete_user_device(APP, with_device.user.id, d.id)
        assert.equal(404, err.status)
        assert.equal("device_not_found", err.code)
        assert.is_true(client:revoke_user_refresh_tokens(APP, with_device.user.id))
    end)

    it("reports each error status and code of the API", function()
        local bad_key = new_client { api_key = "wrong_key" }
        local _, err = bad_key:get_user(APP, "x")
        bad_key:close()
        assert.equal(401, err.status)
        assert.equal("invalid_access_token", err.code)
        assert.not_matches("wrong_key", tostring(err))

        _, err = client:get_user("no_such_app", "x")
        assert.equal(404, err.status)
        assert.equal("app_not_found", err.code)

        _, err = client:create_user(APP, { email = "not an email" })
        assert.equal(400, err.status)
        assert.equal("invalid_request", err.code)
        assert.matches("email", err.message)

        _, err = client:create_user(APP, { phone = "555-1234" })
        assert.equal(400, err.status)
        assert.matches("phone", err.message)

        assert(client:create_user(APP, { email = "dup@example.com" }))
        _, err = client:create_user(APP, { email = "DUP@example.com" })
        assert.equal("http", err.kind)
        assert.is_true(err.status >= 400 and err.status < 500)
    end)

    it("raises on bad arguments before any request", function()
        local before = emulator.stats().total
        raises("app_id: must not be empty", client.get_user, client, "", "x")
        raises("user_id: expected a string, got nil", client.get_user, client, APP)
        raises("user_id: must not be empty", client.delete_user, client, APP, "  ")
        raises("device_id", client.delete_user_device, client, APP, "u")
        raises("an email or a phone is required", client.create_user, client, APP, {})
        raises("unknown field nickname", client.create_user, client, APP,
            { email = "a@b.co", nickname = "x" })
        raises("field email: expected string", client.create_user, client, APP, { email = 42 })
        raises("user_metadata.n: not a finite number", client.create_user, client, APP,
            { email = "a@b.co", user_metadata = { n = 0 / 0 } })
        raises("nothing to update", client.update_user, client, APP, "u", {})
        raises("limit", client.list_paginated_users, client, APP, { limit = 501 })
        raises("unknown parameter", client.list_paginated_users, client, APP, { sort = "id" })
        raises("unknown operation", client.start, client, "drop_database")
        assert.equal(before, emulator.stats().total)
    end)

    it("points argument errors at the calling line", function()
        local line = debug.getinfo(1, "l").currentline + 2
        local ok, err = pcall(function()
            local user = client:get_user(APP, nil)
            return user
        end)
        assert.is_false(ok)
        assert.matches("users_spec.lua:" .. line .. ":", err)
    end)

    it("checks its options", function()
        raises("api_key is required", users.new, {})
        raises("unknown option timeout$", users.new, { api_key = "k", timeout = 5 })
        raises("option timeout_ms: expected number", users.new, { api_key = "k", timeout_ms = "5" })
        raises("control", users.new, { api_key = "k\r\nX-Evil: 1" })
        for _, name in ipairs { "max_attempts", "timeout_ms", "connect_timeout_ms",
                "attempt_timeout_ms", "max_response_bytes", "max_host_connections" } do
            raises(name .. ": expected a whole number >= 1, got 0", users.new,
                { api_key = "k", [name] = 0 })
        end
        raises("retry_base_delay_ms: expected a whole number >= 0, got %-1", users.new,
            { api_key = "k", retry_base_delay_ms = -1 })
        raises("user_agent holds a control byte", users.new, { api_key = "k", user_agent = "a\nb" })
        raises("base_url", users.new, { api_key = "k", base_url = "ftp://x" })
        raises("base_url", users.new, { api_key = "k", base_url = "https://x/v1?debug=1" })
    end)

    it("keeps hostile ids inside their path segment", function()
        local user = assert(client:create_user(APP, { email = "safe@example.com" }))
        for _, id in ipairs { "../" .. user.id, "..", user.id .. "/activate", "a/b?c#d", "%2e%2e",
                "x\r\nHost: evil", user.id .. "?x=1" } do
            local got, err = client:get_user(APP, id)
            assert.is_nil(got, id)
            assert.equal(404, err.status, id)
            assert.equal("user_not_found", err.code, id)
        end
        local _, err = client:list_paginated_users(APP .. "/users/" .. user.id, {})
        assert.equal(404, err.status)
    end)

    it("never shows the API key", function()
        local secret = new_client { api_key = "sk_live_very_secret" }
        assert.not_matches("very_secret", tostring(secret))
        for k, v in pairs(secret) do
            assert.not_matches("very_secret", tostring(k) .. tostring(v))
        end
        local _, err = secret:get_user(APP, "x")
        assert.not_matches("very_secret", tostring(err))
        for _, v in pairs(err) do
            assert.not_matches("very_secret", tostring(v))
        end
        secret:close()
    end)

    it("fails clearly once closed, and closes twice without harm", function()
        client:close()
        client:close()
        raises("closed client", client.get_user, client, APP, "x")
        assert.matches("closed", tostring(client))
    end)

    it("keeps null members when asked, as cjson.null", function()
        local keep = new_client { keep_null = true }
        local user = assert(keep:create_user(APP, { email = "n@example.com" }))
        assert.equal(require("cjson").null, user.user_metadata)
        keep:close()
        local plain = assert(client:get_user(APP, user.id))
        assert.is_nil(plain.user_metadata)
    end)

    it("loads no cosocket code outside nginx", function()
        -- A fresh interpreter: this one's specs load passage.cosocket themselves.
        local lua = rawget(_G, "jit") and "luajit" or "lua5.4"
        local ok, out = require("support.shell")(lua .. " -e '"
            .. "local users = require(\"passage.users\"); "
            .. "local c = users.new { api_key = \"k\" }; c:check(\"get_user\", \"a\", \"b\"); c:close(); "
            .. "print(package.loaded[\"passage.cosocket\"] == nil)'")
        assert.is_true(ok, out)
        assert.equal("true\n", out)
    end)
end)
