-- The official Node SDK (@passageidentity/passage-node, from npm) against the
-- emulator: every user operation it offers, its results checked here and
-- against the emulator's own view. The SDK is installed into build/node-sdk
-- once (pinned; the newest release on npm, 3.0.2, ships without its dist/
-- build, so 2.12.1 is the newest that loads). Needs node and npm (`make deps`
-- installs them); without them, or when npm cannot install, the spec fails
-- saying so.
local cjson = require "cjson"
local emulator = require "support.emulator"
local run = require "support.shell"

local PACKAGE = "@passageidentity/passage-node"
local VERSION = "2.12.1"
local DIR = "build/node-sdk"
local DRIVER = "spec/support/passage_node.js"

-- Every operation on passage.user in that version; a spec below checks this
-- list against what the SDK offers, so a new one cannot go untested.
local SDK_METHODS = { "activate", "create", "deactivate", "delete", "get", "getByIdentifier",
    "getUserByIdentifier", "listDevices", "revokeDevice", "revokeRefreshTokens", "signOut", "update" }

local function installed_version()
    local f = io.open(DIR .. "/node_modules/" .. PACKAGE .. "/package.json")
    if not f then
        return nil
    end
    local ok, pkg = pcall(cjson.decode, f:read("*a"))
    f:close()
    return ok and pkg.version or nil
end

local function install()
    for _, tool in ipairs { "node", "npm" } do
        assert(run("command -v " .. tool), tool .. " is not installed: `make deps` installs nodejs and npm")
    end
    if installed_version() == VERSION then
        return
    end
    local ok, out = run(string.format("mkdir -p %s && npm install --prefix %s --no-audit --no-fund "
        .. "--ignore-scripts --loglevel=error %s@%s", DIR, DIR, PACKAGE, VERSION))
    assert(ok, "npm could not install " .. PACKAGE .. "@" .. VERSION .. ": " .. out)
    assert(installed_version() == VERSION, "npm did not install " .. PACKAGE .. "@" .. VERSION)
end

-- Runs the steps through the SDK (see the driver); one result per step.
local function sdk(steps, key)
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(cjson.encode(steps))
    f:close()
    local ok, out = run(string.format("node %s %s %s test_app %s %s", DRIVER, DIR, emulator.url(),
        key or "test_key", file))
    os.remove(file)
    assert(ok, "the Node SDK driver failed: " .. out)
    local results = cjson.decode(out:match("(%[[^\n]*)\n?$") or out) -- its last line; warnings may precede it
    assert.are.equal(#steps, #results)
    return results
end

-- The value of one step's result; fails with the SDK's error when it threw.
local function ok(result, what)
    assert(result.error == nil, (what or "step") .. ": " .. cjson.encode(result.error or {}))
    return result.ok
end

-- Stands for a field of an earlier step's value (see the driver).
local function from(step, field)
    return { result = step, field = field or "id" }
end

local function stats_count(route, status)
    return emulator.count(emulator.stats(), route, status)
end

describe("the official Node SDK against the emulator", function()
    setup(install)

    before_each(function()
        emulator.reset()
    end)

    it("offers exactly the user operations this spec covers", function()
        assert.are.same(SDK_METHODS, ok(sdk({ { "methods" } })[1]))
    end)

    it("creates, gets, updates, deactivates, activates and deletes a user", function()
        local r = sdk({
            { "create", { email = "Node@Example.com", user_metadata = { plan = "pro" } } },
            { "get", from(1) },
            { "update", from(1), { phone = "+15005550007", user_metadata = { seats = 3 } } },
            { "deactivate", from(1) },
        })
        local created = ok(r[1], "create")
        assert.are.equal("node@example.com", created.email)
        assert.are.equal(24, #created.id)
        assert.are.equal("active", created.status)
        assert.are.same({ plan = "pro" }, created.user_metadata)
        assert.are.same({}, created.webauthn_devices)
        assert.are.equal("0001-01-01T00:00:00.000Z", created.last_login_at)
        local got = ok(r[2], "get")
        assert.are.equal(created.id, got.id)
        assert.are.equal(created.created_at, got.created_at)
        local updated = ok(r[3], "update")
        assert.are.equal("+15005550007", updated.phone)
        assert.are.same({ plan = "pro", seats = 3 }, updated.user_metadata)
        assert.are.equal("inactive", ok(r[4], "deactivate").status)

        -- what the emulator stored, read with passage.users
        local client = emulator.client()
        local stored = assert(client:get_user("test_app", created.id))
        assert.are.same({ "node@example.com", "+15005550007", "inactive", 3 },
            { stored.email, stored.phone, stored.status, stored.user_metadata.seats })

        r = sdk({ { "activate", created.id }, { "delete", created.id }, { "get", created.id } })
        assert.are.equal("active", ok(r[1], "activate").status)
        assert.is_true(ok(r[2], "delete"))
        assert.are.same({ name = "PassageError", message = "Could not fetch user: User not found",
            statusCode = 404, errorCode = "user_not_found" }, r[3].error)
        local _, err = client:get_user("test_app", created.id)
        assert.are.equal(404, err.status)
        client:close()
    end)

    it("finds a user by email or phone, under both of its names", function()
        local r = sdk({
            { "create", { email = "find.me@example.com", phone = "+15005550008" } },
            { "getByIdentifier", "FIND.ME@example.com" },
            { "getUserByIdentifier", "+15005550008" },
            { "getByIdentifier", "nobody@example.com" },
        })
        local id = ok(r[1], "create").id
        assert.are.equal(id, ok(r[2], "getByIdentifier").id)
        assert.are.equal(id, ok(r[3], "getUserByIdentifier").id)
        assert.are.equal("PassageError", r[4].error.name)
        assert.matches("User not found", r[4].error.message)
        -- the SDK looks up with a one-user list page, then gets the user
        assert.are.equal(3, stats_count("GET /apps/{app_id}/users", 200))
        assert.are.equal(2, stats_count("GET /apps/{app_id}/users/{user_id}", 200))
    end)

    it("lists and revokes devices and revokes refresh tokens, under both names", function()
        emulator.seed("test_app", 200, 5)
        local _, page = emulator.request_json(emulator.url()
            .. "/apps/test_app/users?limit=500&login_count=gt:0",
            { headers = { authorization = "Bearer test_key" } })
        local steps = {}
        for i, u in ipairs(page.users) do
            steps[i] = { "listDevices", u.id }
        end
        local user, devices
        for i, r in ipairs(sdk(steps)) do
            local listed = ok(r, "listDevices")
            if #listed > 0 then
                user, devices = page.users[i], listed
                break
            end
        end
        assert.is_truthy(user, "a seeded user with devices")
        local device = devices[1]
        assert.are.equal("string", type(device.id))
        assert.are.equal("string", type(device.friendly_name))
        assert.are.equal("number", type(device.usage_count))

        local r = sdk({
            { "revokeDevice", user.id, device.id },
            { "listDevices", user.id },
            { "revokeDevice", user.id, device.id },
            { "revokeRefreshTokens", user.id },
            { "signOut", user.id },
        })
        assert.is_true(ok(r[1], "revokeDevice"))
        assert.are.equal(#devices - 1, #ok(r[2], "listDevices"))
        assert.are.same({ 404, "device_not_found" }, { r[3].error.statusCode, r[3].error.errorCode })
        assert.is_true(ok(r[4], "revokeRefreshTokens"))
        assert.is_true(ok(r[5], "signOut"))
        assert.are.equal(2, stats_count("DELETE /apps/{app_id}/users/{user_id}/tokens", 200))
    end)

    it("reports the emulator's errors as PassageError with status and code", function()
        local function status_and_code(r)
            return { r.error.statusCode, r.error.errorCode }
        end
        local r = sdk({
            { "create", { email = "twice@example.com" } },
            { "create", { email = "twice@example.com" } },
            { "update", "no_such_user", { phone = "+15005550009" } },
            { "create", { email = "not-an-email" } },
        })
        local id = ok(r[1], "create").id
        assert.are.same({ 400, "invalid_request" }, status_and_code(r[2]))
        assert.matches("email: already in use", r[2].error.message)
        assert.are.same({ 404, "user_not_found" }, status_and_code(r[3]))
        assert.are.same({ 400, "invalid_request" }, status_and_code(r[4]))
        local denied = sdk({ { "get", id } }, "wrong_key")[1]
        assert.are.same({ 401, "invalid_access_token" }, status_and_code(denied))
    end)
end)
