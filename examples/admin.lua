-- A small user-administration script: the demo that `make demo` runs
-- against the embedded emulator. Point it at the real API with
-- PASSAGE_BASE_URL, PASSAGE_API_KEY and PASSAGE_APP_ID.
local users = require "passage.users"
local paginator = require "passage.paginator"

local port = os.getenv("PASSAGE_EMULATOR_PORT") or "8787"
local app_id = os.getenv("PASSAGE_APP_ID") or "test_app"
local client = users.new {
    api_key = os.getenv("PASSAGE_API_KEY") or "test_key",
    base_url = os.getenv("PASSAGE_BASE_URL") or ("http://127.0.0.1:" .. port .. "/v1"),
    timeout_ms = 10000,
}

local function check(value, err)
    if value == nil then
        io.stderr:write("failed: ", tostring(err), "\n")
        os.exit(1)
    end
    return value
end

local function say(fmt, ...)
    print(string.format(fmt, ...))
end

-- 1. Create a few users, one with metadata.
local people = {
    { email = "Ada@Example.com", user_metadata = { team = "engines" } },
    { email = "grace@example.com", phone = "+14155552671" },
    { phone = "+442071838750" },
}
local created = {}
for i, req in ipairs(people) do
    local user = check(client:create_user(app_id, req))
    created[i] = user
    say("created   %s  email=%q phone=%q status=%s", user.id, user.email, user.phone, user.status)
end

-- 2. Look one up the way a support script would: by email, any case.
local ada = check(client:get_user_by_identifier(app_id, "ADA@example.COM"))
say("found     %s  by identifier ADA@example.COM", ada.id)

-- 3. Update and deactivate.
local updated = check(client:update_user(app_id, ada.id, { user_metadata = { team = "analytics" } }))
say("updated   %s  team=%s", updated.id, tostring(updated.user_metadata and updated.user_metadata.team))
local off = check(client:deactivate_user(app_id, created[2].id))
say("deactivated %s  status=%s", off.id, off.status)

-- 4. Walk every user of the app with one loop, then only the active ones.
local total, active = 0, 0
for user in paginator.users(client, app_id, { limit = 2 }) do
    total = total + 1
    say("listed    %s  %-20s %s", user.id, user.email ~= "" and user.email or user.phone, user.status)
end
for _ in paginator.users(client, app_id, { status = "active" }) do
    active = active + 1
end
say("listed    %d users, %d of them active", total, active)

-- 5. A failure is a value, not an exception.
local missing, err = client:get_user(app_id, "no-such-user")
say("get of a missing user: %s (kind=%s status=%s code=%s)", tostring(missing), err.kind,
    tostring(err.status), tostring(err.code))

-- 6. Clean up: delete what this script created, three calls in flight.
local calls = {}
for i, user in ipairs(created) do
    calls[i] = { "delete_user", app_id, user.id }
end
for i, result in ipairs(client:bulk(calls, { max_in_flight = 3 })) do
    say("deleted   %s  %s", created[i].id, result.err and tostring(result.err) or "ok")
end

client:close()
