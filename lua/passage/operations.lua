-- Every operation of the Passage Management API v1 (users), as data.
-- passage.users makes the client's methods, start(), bulk() and
-- users.OPERATIONS from this table, and the reference documents it: adding
-- an operation is one entry here and a spec.
--
--   method      the HTTP method
--   path        under base_url; {name} is an argument, sent as one
--               percent-encoded path segment (the path's arguments come
--               first in args, in the same order)
--   args        the arguments after the client, in order (any number);
--               how each is checked is in passage.users (ARGUMENTS)
--   query       the argument whose filters make the query string, or a
--               function(args...) -> list params
--   body        the argument sent as the JSON body
--   result      what the call returns from the answer (passage.schema)
--   idempotent  safe to repeat: retried on transient faults (a call that is
--               not is retried only when not one byte of it was sent)
--   next        a continuation: function(value, args...) -> the operation to
--               run next on the same handle and its arguments; or nil, err
--
-- Each entry's doc comment is its reference entry: LDoc shows it as a method
-- of passage.users' Client (config.ld merges this file into that module).

--- The operations of the API, as methods of `Client`.
-- @module passage.users
local errors = require "passage.errors"

local operations = {}

--- A client of the API.
-- @type Client

--- Fetches a user.
--
-- `GET /apps/{app_id}/users/{user_id}`. Safe to repeat: retried on
-- @{passage.errors.kinds|transient faults}.
-- @function get_user
-- @string app_id the app
-- @string user_id the user's id
-- @treturn[1] passage.schema.user the user
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
-- @usage
-- local user, err = client:get_user(app_id, user_id)
-- if not user and err.status == 404 then print("no such user") end
operations.get_user = {
    method = "GET", path = "/apps/{app_id}/users/{user_id}",
    args = { "app_id", "user_id" }, result = "user", idempotent = true,
}

--- Creates a user.
--
-- `POST /apps/{app_id}/users`. Not safe to repeat: retried on
-- @{passage.errors.kinds|transient faults} only when not one byte of the
-- request was sent, so a user is never created twice (a create that timed
-- out may still have made the user).
-- @function create_user
-- @string app_id the app
-- @tparam table user the new user's fields: an `email` or a `phone`
-- is required
-- @tparam[opt] string user.email the email
-- @tparam[opt] string user.phone the phone number (E.164, as "+15005550006")
-- @tparam[opt] table user.user_metadata the app's metadata fields: string
-- keys, each a string, a finite number or a boolean
-- @treturn[1] passage.schema.user the new user
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
-- @usage
-- local user, err = client:create_user(app_id, {
--     email = "ada@example.com", user_metadata = { team = "engines" } })
operations.create_user = {
    method = "POST", path = "/apps/{app_id}/users",
    args = { "app_id", "create" }, body = "create", result = "user", idempotent = false,
}

--- Changes a user's email, phone or metadata.
--
-- `PATCH /apps/{app_id}/users/{user_id}`. Safe to repeat: retried on
-- @{passage.errors.kinds|transient faults}.
-- @function update_user
-- @string app_id the app
-- @string user_id the user's id
-- @tparam table changes the fields to change, at least one
-- @tparam[opt] string changes.email the new email
-- @tparam[opt] string changes.phone the new phone number
-- @tparam[opt] table changes.user_metadata the metadata fields: string keys,
-- each a string, a finite number or a boolean
-- @treturn[1] passage.schema.user the user as it now is
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
-- @usage
-- client:update_user(app_id, user_id, { phone = "+15005550006" })
operations.update_user = {
    method = "PATCH", path = "/apps/{app_id}/users/{user_id}",
    args = { "app_id", "user_id", "update" }, body = "update", result = "user", idempotent = true,
}

--- Deletes a user.
--
-- `DELETE /apps/{app_id}/users/{user_id}`. Safe to repeat: retried on
-- @{passage.errors.kinds|transient faults}.
-- @function delete_user
-- @string app_id the app
-- @string user_id the user's id
-- @treturn[1] bool `true`
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
operations.delete_user = {
    method = "DELETE", path = "/apps/{app_id}/users/{user_id}",
    args = { "app_id", "user_id" }, result = "done", idempotent = true,
}

--- Activates a user: its status becomes `"active"`.
--
-- `PATCH /apps/{app_id}/users/{user_id}/activate`. Safe to repeat: retried on
-- @{passage.errors.kinds|transient faults}.
-- @function activate_user
-- @string app_id the app
-- @string user_id the user's id
-- @treturn[1] passage.schema.user the user as it now is
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
operations.activate_user = {
    method = "PATCH", path = "/apps/{app_id}/users/{user_id}/activate",
    args = { "app_id", "user_id" }, result = "user", idempotent = true,
}

--- Deactivates a user: its status becomes `"inactive"`.
--
-- `PATCH /apps/{app_id}/users/{user_id}/deactivate`. Safe to repeat: retried on
-- @{passage.errors.kinds|transient faults}.
-- @function deactivate_user
-- @string app_id the app
-- @string user_id the user's id
-- @treturn[1] passage.schema.user the user as it now is
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
operations.deactivate_user = {
    method = "PATCH", path = "/apps/{app_id}/users/{user_id}/deactivate",
    args = { "app_id", "user_id" }, result = "user", idempotent = true,
}

--- Lists one page of users, filtered and ordered.
--
-- `GET /apps/{app_id}/users`. Safe to repeat: retried on
-- @{passage.errors.kinds|transient faults}. To go through every
-- page, use `passage.paginator`, which keeps the window stable.
-- @function list_paginated_users
-- @string app_id the app
-- @tparam[opt] table params page, limit, order and filters, as
-- `passage.filters` describes them; all checked before the request
-- @treturn[1] passage.schema.page the whole page
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
-- @usage
-- local page = client:list_paginated_users(app_id, {
--     limit = 100, status = "active", login_count = { gt = 5 },
--     order_by = "created_at:DESC" })
-- print(page.total_users, #page.users)
operations.list_paginated_users = {
    method = "GET", path = "/apps/{app_id}/users",
    args = { "app_id", "params" }, query = "params", result = "list", idempotent = true,
}

--- Lists a user's WebAuthn devices.
--
-- `GET /apps/{app_id}/users/{user_id}/devices`. Safe to repeat: retried on
-- @{passage.errors.kinds|transient faults}.
-- @function list_user_devices
-- @string app_id the app
-- @string user_id the user's id
-- @treturn[1] {passage.schema.device,...} the devices (an array, maybe
-- empty)
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
operations.list_user_devices = {
    method = "GET", path = "/apps/{app_id}/users/{user_id}/devices",
    args = { "app_id", "user_id" }, result = "devices", idempotent = true,
}

--- Deletes one of a user's WebAuthn devices.
--
-- `DELETE /apps/{app_id}/users/{user_id}/devices/{device_id}`. Safe to
-- repeat: retried on @{passage.errors.kinds|transient faults}.
-- @function delete_user_device
-- @string app_id the app
-- @string user_id the user's id
-- @string device_id the device's id (`passage.schema.device` `id`)
-- @treturn[1] bool `true`
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
operations.delete_user_device = {
    method = "DELETE", path = "/apps/{app_id}/users/{user_id}/devices/{device_id}",
    args = { "app_id", "user_id", "device_id" }, result = "done", idempotent = true,
}

--- Revokes every refresh token of a user: its sessions end when their
-- access tokens expire.
--
-- `DELETE /apps/{app_id}/users/{user_id}/tokens`. Safe to repeat: retried on
-- @{passage.errors.kinds|transient faults}.
-- @function revoke_user_refresh_tokens
-- @string app_id the app
-- @string user_id the user's id
-- @treturn[1] bool `true`
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
operations.revoke_user_refresh_tokens = {
    method = "DELETE", path = "/apps/{app_id}/users/{user_id}/tokens",
    args = { "app_id", "user_id" }, result = "done", idempotent = true,
}

--- Finds the user with an email or phone number.
--
-- Two requests on one handle, as the official SDKs do it: a list with
-- `limit=1` on the lower-cased identifier, then a `get_user` of the user
-- found. Both are safe to repeat. When nobody has the identifier, `err`
-- has `kind` `"not_found"` and `code` `"user_not_found"`, with no status
-- (there was no HTTP error) and no identifier in its message (an email is
-- personal data).
-- @function get_user_by_identifier
-- @string app_id the app
-- @string identifier an email or phone number, in any case
-- @treturn[1] passage.schema.user the user
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
-- @usage
-- local user, err = client:get_user_by_identifier(app_id, "ADA@example.com")
-- if not user and err.kind == "not_found" then print("nobody") end
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
