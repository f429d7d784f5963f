--- Every command of `passage-users`, in one place.
--
-- Each entry names a command, the module under `passage.cli.commands` that
-- sets it up (`setup(cmd, entry)`, on an argparse command) and runs it
-- (`run(ctx)`), and for a command that is one call per user the library
-- operation it makes (which import records name with `op`, too).
--
-- Then every operation of the library (`passage.users.OPERATIONS`, made
-- from `passage.operations`) is a command of its own, named after it with
-- dashes (`get_user` is `get-user`, `list_paginated_users` is
-- `list-paginated-users`), run by `passage.cli.commands.operation`: an
-- operation added to the library appears here with no code of the command.
-- @module passage.cli.command_list
local users = require "passage.users"

local command_list = {
    { name = "get", module = "user", operation = "get_user" },
    { name = "find", module = "user", operation = "get_user_by_identifier" },
    { name = "create", module = "user", operation = "create_user" },
    { name = "update", module = "user", operation = "update_user" },
    { name = "devices", module = "user", operation = "list_user_devices" },
    { name = "delete", module = "change", operation = "delete_user" },
    { name = "activate", module = "change", operation = "activate_user" },
    { name = "deactivate", module = "change", operation = "deactivate_user" },
    { name = "revoke-tokens", module = "change", operation = "revoke_user_refresh_tokens" },
    { name = "delete-device", module = "change", operation = "delete_user_device" },
    { name = "list", module = "list" },
    { name = "export", module = "export" },
    { name = "import", aliases = { "bulk" }, module = "import" },
}

--- The command name of a library operation.
-- @tparam string operation as `get_user`
-- @treturn string as `get-user`
function command_list.operation_command(operation)
    return (operation:gsub("_", "-"))
end

for _, operation in ipairs(users.OPERATIONS) do
    command_list[#command_list + 1] = { name = command_list.operation_command(operation),
        module = "operation", operation = operation, generated = true }
end

--- The entry of a command (or an alias) by name.
-- @tparam string name
-- @treturn ?table
function command_list.find(name)
    for _, entry in ipairs(command_list) do
        if entry.name == name then
            return entry
        end
        for _, alias in ipairs(entry.aliases or {}) do
            if alias == name then
                return entry
            end
        end
    end
end

return command_list
