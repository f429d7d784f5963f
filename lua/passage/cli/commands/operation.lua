--- Each operation of the library as a command of its own (`get-user`,
-- `list-paginated-users`, ...), made from its entry in `passage.operations`:
-- its arguments become the command's (an id or identifier positional, a
-- create or update request the user options, list parameters the filter
-- options), it runs as the client's method, and its value is written as
-- indented JSON. An operation added to the library is a command with no
-- code here; an argument of a kind not known here is taken as text, or as
-- JSON when it is a JSON object or array.
-- @module passage.cli.commands.operation
local operations = require "passage.operations"
local calls = require "passage.cli.calls"
local flags = require "passage.cli.flags"
local json = require "passage.cli.json"
local user = require "passage.cli.commands.user"
local where = require "passage.cli.where"

local operation = {}

local unpack = table.unpack or unpack -- luacheck: globals unpack

local DESCRIBED = {
    user_id = "the user's id",
    device_id = "the device's id",
    identifier = "an email address or a phone number",
}

local REQUEST = { create = true, update = true }

--- Sets up the command's arguments and options from the operation.
-- @param cmd an argparse command
-- @tparam table entry its `passage.cli.command_list` entry
function operation.setup(cmd, entry)
    local op = operations[entry.operation]
    cmd:summary(string.format("%s %s (the operation %s).", op.method, op.path, entry.operation))
    for i = 2, #op.args do
        local name = op.args[i]
        if REQUEST[name] then
            flags.user_fields(cmd)
        elseif name == "params" then
            flags.list_params(cmd)
        else
            cmd:argument(name):description(DESCRIBED[name] or name)
        end
    end
end

-- The value of one argument of the operation from the command line.
local function argument_value(args, name)
    if REQUEST[name] then
        return user.request(args)
    elseif name == "params" then
        local params, problem = where.from_args(args)
        if params then
            params.limit, params.page = args.limit, args.page
            params.created_before = args.created_before
        end
        return params, problem
    end
    local text = args[name]
    if type(text) == "string" and text:find("^%s*[{%[]") then
        local v = json.decode(text)
        if type(v) == "table" then
            return v
        end
    end
    return text
end

--- Runs the command; returns the exit status.
-- @tparam table ctx `client`, `app_id`, `args`, `entry`
-- @treturn number
-- @return nil and a usage message
function operation.run(ctx)
    local name = ctx.entry.operation
    local op = operations[name]
    local values = {}
    for i = 2, #op.args do
        local v, problem = argument_value(ctx.args, op.args[i])
        if v == nil and problem then
            return nil, problem
        end
        values[i - 1] = v
    end
    return user.show(calls.one(ctx.client, name, ctx.app_id, unpack(values, 1, #op.args - 1)))
end

return operation
