-- Every operation of the Passage Management API v1 (users), as data.
-- passage.users makes the client's methods, start(), bulk() and
-- users.OPERATIONS from this table, and the reference documents it: adding
-- an operation is one entry here and a spec.
--
--   method      the HTTP method
--   path        under base_url; {name} is an argument, sent as one
--               percent-encoded path segment (the path's arguments come
--               first in args, in the same order)
--   args        the arguments after the client, in order (at most three);
--               how each is checked is in passage.users (ARGUMENTS)
--   query       the argument whose filters make the query string, or a
--               function(args...) -> list params
--   body        the argument sent as the JSON body
--   result      what the call returns from the answer (passage.schema)
--   idempotent  safe to repeat: retried on transient faults (a call that is
--               not is retried only when not one byte of it was sent)
--   next        a continuation: function(value, args...) -> the operation to
--               run next on the same handle and its arguments; or nil, err
local errors = require "passage.errors"

local operations = {}

operations.get_user = {
    method = "GET", path = "/apps/{app_id}/users/{user_id}",
    args = { "app_id", "user_id" }, result = "user", idempotent = true,
}

operations.create_user = {
    method = "POST", path = "/apps/{app_id}/users",
    args = { "app_id", "create" }, body = "create", result = "user", idempotent = false,
}

operations.update_user = {
    method = "PATCH", path = "/apps/{app_id}/users/{user_id}",
    args = { "app_id", "user_id", "update" }, body = "update", result = "user", idempotent = true,
}

operations.delete_user = {
    method = "DELETE", path = "/apps/{app_id}/users/{user_id}",
    args = { "app_id", "user_id" }, result = "done", idempotent = true,
}

operations.activate_user = {
    method = "PATCH", path = "/apps/{app_id}/users/{user_id}/activate",
    args = { "app_id", "user_id" }, result = "user", idempotent = true,
}

operations.deactivate_user = {
    method = "PATCH", path = "/apps/{app_id}/users/{user_id}/deactivate",
    args = { "app_id", "user_id" }, result = "user", idempotent = true,
}

operations.list_paginated_users = {
    method = "GET", path = "/apps/{app_id}/users",
    args = { "app_id", "params" }, query = "params", result = "list", idempotent = true,
}

operations.list_user_devices = {
    method = "GET", path = "/apps/{app_id}/users/{user_id}/devices",
    args = { "app_id", "user_id" }, result = "devices", idempotent = true,
}

operations.delete_user_device = {
    method = "DELETE", path = "/apps/{app_id}/users/{user_id}/devices/{device_id}",
    args = { "app_id", "user_id", "device_id" }, result = "done", idempotent = true,
}

operations.revoke_user_refresh_tokens = {
    method = "DELETE", path = "/apps/{app_id}/users/{user_id}/tokens",
    args = { "app_id", "user_id" }, result = "done", idempotent = true,
}

-- As the official SDKs do it: a list with limit=1 on the lower-cased
-- identifier, then a get of the user found. No status and no identifier in
-- the error when nobody has it (there was no HTTP error, and an email is
-- personal data).
operations.get_user_by_identifier = {
    method = "GET", path = "/apps/{app_id}/users",
    args = { "app_id", "identifier" },
    query = function(_, identifier)
        return { limit = 1, identifier = identifier:lower() }
    end,
    result = "list", idempotent = true,
    next = function(list, app_id)
        local first = list.users[1]
        if not first then
            return nil, errors.new("not_found", {
                code = "user_not_found", message = "no user has this identifier",
            })
        end
        return "get_user", app_id, first.id
    end,
}

return operations
