-- The shapes of the API's answers, declared once (openapi.json's UserInfo,
-- ListPaginatedUsersItem, ListPaginatedUsersResponse, ListDevicesResponse),
-- and what a call returns from each. A 2xx whose body breaks its shape is a
-- "decode" error, never a half-filled table handed to the script.
--
-- The C checkers (core.checker) are made from these declarations: the
-- decoder runs them on the objects at a path while it parses them, so a
-- 500-user page needs no second pass; only when the decoder is unsure (it
-- sees JSON, so a duplicate key makes it fail an object) does the Lua
-- check below decide, and write the message.
local core = require "passage.core"
local errors = require "passage.errors"

local schema = {}

-- A field with "?" may be absent (older servers omit some) or null; a
-- field that is there must have its type.
schema.USER = {
    id = "string", email = "string?", phone = "string?", status = "string?",
    created_at = "string?", updated_at = "string?", last_login_at = "string?",
    login_count = "number?", email_verified = "boolean?", phone_verified = "boolean?",
}

schema.LIST = {
    users = "table", total_users = "number", page = "number", limit = "number",
    created_before = "number",
}

schema.DEVICES = { devices = "table" }

-- The first field of `v` that breaks `fields`, as a message; nil when none.
-- A kept null (keep_null) counts as absent.
local function wrong_field(what, v, fields)
    if type(v) ~= "table" then
        return string.format("expected %s object, got %s", what, type(v))
    end
    local names = {}
    for name in pairs(fields) do
        names[#names + 1] = name
    end
    table.sort(names) -- the same message for the same body
    for _, name in ipairs(names) do
        local want = fields[name]
        local optional = want:sub(-1) == "?"
        want = optional and want:sub(1, -2) or want
        local got = v[name]
        local absent = got == nil or got == core.null
        if not (absent and optional) and type(got) ~= want then
            return string.format("%s field %s: expected %s, got %s", what, name, want,
                absent and "nothing" or type(got))
        end
    end
end

local function decode_error(problem)
    return errors.new("decode", { message = "response: " .. problem })
end

local user_ok = core.checker(schema.USER)
local list_ok = core.checker(schema.LIST)

-- What each kind of answer gives the script: read(body, checked) -> value |
-- nil, err, where checked tells that the decoder ran `check` on every
-- object at its path and all passed.
schema.results = {}

schema.results.user = {
    check = core.checker(schema.USER, { "user" }),
    read = function(body, checked)
        local user = type(body) == "table" and body.user or nil
        if not (checked and type(user) == "table") and not user_ok(user) then
            return nil, decode_error(wrong_field("a user", user, schema.USER))
        end
        return user
    end,
}

schema.results.list = {
    check = core.checker(schema.USER, { "users", "[]" }),
    read = function(body, checked)
        if not list_ok(body) then
            return nil, decode_error(wrong_field("a list", body, schema.LIST))
        end
        if not checked then
            local list = body.users
            for i = 1, #list do
                if not user_ok(list[i]) then
                    return nil, decode_error(string.format("users[%d]: %s", i,
                        wrong_field("a user", list[i], schema.USER)))
                end
            end
        end
        return body
    end,
}

schema.results.devices = {
    read = function(body)
        if type(body) ~= "table" or type(body.devices) ~= "table" then
            return nil, decode_error(wrong_field("a devices list", body, schema.DEVICES))
        end
        return body.devices
    end,
}

-- 204 or any 2xx: the call succeeded, whatever the body says.
schema.results.done = {
    read = function()
        return true
    end,
}

return schema
