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

--- The shapes of what the client's operations return.
--
-- Results are native Lua tables decoded from the API's JSON: a user, a page
-- of users, a list of devices. Every success is checked against its shape
-- before it is returned: an answer that breaks it (a missing `id`, a
-- `login_count` that is a string) is an error of kind `"decode"`, never a
-- half-filled table. A field marked optional below may be absent (older
-- servers omit some). This module is not meant to be required by scripts:
-- it documents the values.
--
-- From JSON to Lua:
--
-- - objects are tables; arrays are tables with the metatable
--   `passage.users.array_mt`, so an empty array (`webauthn_devices = []`)
--   can be told from an empty object (`social_connections = {}`);
-- - whole numbers are Lua integers on 5.3 and later, other numbers floats;
-- - a `null` member of an object leaves its key absent
--   (`user.user_metadata == nil`), unless the client has `keep_null`: then
--   it is `passage.users.null`; a `null` inside an array is always
--   `passage.users.null`, so arrays keep their length;
-- - timestamps are strings in RFC 3339 (`"2024-01-02T15:04:05.123456Z"`).
-- @module passage.schema
local core = require "passage.core"
local errors = require "passage.errors"

local schema = {}

--- A user, as the @{passage.users.Client:get_user|client}'s `get_user`,
-- `create_user`, `update_user`, `activate_user`, `deactivate_user` and
-- `get_user_by_identifier` return it (the API's `UserInfo`). Only `id` is
-- required; the others are checked when present.
-- @table user
-- @tfield string id the user's id
-- @tfield[opt] string email the email (lower-cased by the server), `""` when
-- none
-- @tfield[opt] string phone the phone number (E.164), `""` when none
-- @tfield[opt] string status `"active"`, `"inactive"` or `"pending"`
-- @tfield[opt] bool email_verified whether the email is verified
-- @tfield[opt] bool phone_verified whether the phone number is verified
-- @tfield[opt] int login_count how many times the user logged in
-- @tfield[opt] string created_at when the user was created
-- @tfield[opt] string updated_at when the user last changed
-- @tfield[opt] string last_login_at when the user last logged in
-- @tfield[opt] table user_metadata the app's metadata fields (absent when
-- the server sends `null`)
-- @tfield[opt] string external_id the external id (Flex apps only)
-- @tfield[opt] bool webauthn whether the user has a WebAuthn credential
-- @tfield[opt] {device,...} webauthn_devices the user's devices
-- @tfield[opt] {string,...} webauthn_types the kinds of credentials used:
-- `"passkey"`, `"security_key"`, `"platform"`
-- @tfield[opt] table social_connections the connected social accounts, by
-- provider (`apple`, `github`, `google`)
-- @tfield[opt] {table,...} recent_events the user's recent login events

-- A field with "?" may be absent (older servers omit some) or null; a
-- field that is there must have its type.
schema.USER = {
    id = "string", email = "string?", phone = "string?", status = "string?",
    created_at = "string?", updated_at = "string?", last_login_at = "string?",
    login_count = "number?", email_verified = "boolean?", phone_verified = "boolean?",
}

-- The fields a create or update request sets, and their types (what
-- passage.users checks in a request table). For tools that read users
-- back from a file: every other field of a user is read-only.
schema.USER_REQUEST = { email = "string", phone = "string", user_metadata = "table" }

-- The other fields a user may have (documented above, not checked): with
-- `USER`'s and `USER_REQUEST`'s, every field of a user, so a tool reading
-- users back can tell a read-only field from one no user has.
schema.USER_OTHER = {
    "external_id", "webauthn", "webauthn_devices", "webauthn_types", "social_connections",
    "recent_events",
}

-- The fields of a listed user in a stable order: `USER`'s, then
-- `user_metadata` (the columns of a table or CSV of users).
schema.USER_COLUMNS = {
    "id", "email", "phone", "status", "email_verified", "phone_verified", "login_count",
    "created_at", "updated_at", "last_login_at", "user_metadata",
}

--- A page of users, as
-- @{passage.users.Client:list_paginated_users|list_paginated_users} returns
-- it (the API's `ListPaginatedUsersResponse`, whole).
-- `passage.paginator.pages` yields these too.
-- @table page
-- @tfield {user,...} users the users of the page, each a `user` with the
-- fields of a listing: no `webauthn`, `webauthn_devices`,
-- `webauthn_types`, `social_connections` or `recent_events`
-- @tfield int total_users how many users match the query, all pages
-- together
-- @tfield int page the page's number, from 1
-- @tfield int limit users per page
-- @tfield int created_before the window's end, in Unix seconds: the page
-- lists users created before it (send it back to keep the same window)
-- @tfield[opt] table _links `first`, `last`, `next`, `previous` and
-- `self`, each `{ href = "..." }`
schema.LIST = {
    users = "array", total_users = "number", page = "number", limit = "number",
    created_before = "number",
}

--- A WebAuthn device, as
-- @{passage.users.Client:list_user_devices|list_user_devices} returns them
-- (an array) and as a user's `webauthn_devices` holds them (the API's
-- `WebAuthnDevices`). These fields are not checked.
-- @table device
-- @tfield string id the device's id (for `delete_user_device`)
-- @tfield string cred_id the credential's id
-- @tfield string friendly_name the name shown for the device
-- @tfield string type `"passkey"`, `"security_key"` or `"platform"`
-- @tfield int usage_count how many times it was used to log in
-- @tfield string created_at when it was first used
-- @tfield string updated_at when it last changed
-- @tfield string last_login_at when it was last used
-- @tfield table icons `light` and `dark`, each an SVG as a data URL (absent
-- when the server sends `null`)
schema.DEVICES = { devices = "array" }

-- The type a field declaration names for v: "array" for a decoded JSON
-- array (an object where the API has an array is an error, not an empty
-- list), "object" for another table, else type(v).
local function json_type(v)
    if type(v) ~= "table" then
        return type(v)
    end
    return getmetatable(v) == core.array_mt and "array" or "object"
end

-- Whether v has the type `want` of a declaration ("table" takes an array or
-- an object).
local function has_type(v, want)
    if want == "array" then
        return json_type(v) == "array"
    end
    return type(v) == want
end

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
        if not (absent and optional) and not has_type(got, want) then
            return string.format("%s field %s: expected %s, got %s", what, name, want,
                absent and "nothing" or json_type(got))
        end
    end
end

local function decode_error(problem)
    return errors.new("decode", { message = "response: " .. problem })
end

local user_ok = core.checker(schema.USER)
local list_ok = core.checker(schema.LIST)
local devices_ok = core.checker(schema.DEVICES)

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
        if not devices_ok(body) then
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
