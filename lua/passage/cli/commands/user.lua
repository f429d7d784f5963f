--- `get`, `find`, `create`, `update`, `devices`: one call, its answer as
-- indented JSON on stdout, or the error on stderr.
-- @module passage.cli.commands.user
local calls = require "passage.cli.calls"
local flags = require "passage.cli.flags"
local json = require "passage.cli.json"
local output = require "passage.cli.output"
local signals = require "passage.cli.signals"

local user = {}

local SUMMARY = {
    get = "Show a user.",
    find = "Show the user with an email or phone.",
    create = "Create a user.",
    update = "Update a user's email, phone or metadata.",
    devices = "List a user's devices.",
}

--- Sets up the command's arguments and options.
-- @param cmd an argparse command
-- @tparam table entry its `passage.cli.command_list` entry
function user.setup(cmd, entry)
    local name = entry.name
    cmd:summary(SUMMARY[name])
    if name == "find" then
        cmd:argument("identifier"):description("email address or phone number")
    elseif name ~= "create" then
        cmd:argument("user_id")
    end
    if name == "create" or name == "update" then
        flags.user_fields(cmd)
    end
end

--- Writes a call's value as indented JSON, or its error; returns the exit
-- status (130/143 when a signal stopped the call).
-- @param value
-- @param err
-- @treturn int
function user.show(value, err)
    if value == nil and signals.exit_status() then
        output.say("stopped by %s", signals.name())
        return signals.exit_status()
    elseif value == nil then
        output.say("%s", tostring(err))
        return 1
    end
    output.out(json.pretty(value) .. "\n")
    return 0
end

--- The request table of create and update from --email, --phone,
-- --metadata key=value and --metadata-json.
-- @tparam table args the parsed command line
-- @return the request, or nil and a usage message
function user.request(args)
    local req = { email = args.email, phone = args.phone }
    local md
    if args.metadata_json then
        local v, err = json.decode(args.metadata_json)
        if type(v) ~= "table" then
            return nil, "--metadata-json: not a JSON object" .. (err and ": " .. err or "")
        end
        md = v
    end
    for _, pair in ipairs(args.metadata or {}) do
        local k, v = pair:match("^([^=]+)=(.*)$")
        if not k then
            return nil, string.format("--metadata %q: expected key=value", pair)
        end
        md = md or {}
        md[k] = v
    end
    req.user_metadata = md
    return req
end

--- Runs the command; returns the exit status.
-- @tparam table ctx `client`, `app_id`, `args`
-- @treturn number
-- @return nil and a usage message
function user.run(ctx)
    local client, app, args = ctx.client, ctx.app_id, ctx.args
    local command = args.command
    if command == "get" then
        return user.show(calls.one(client, "get_user", app, args.user_id))
    elseif command == "find" then
        return user.show(calls.one(client, "get_user_by_identifier", app, args.identifier))
    elseif command == "devices" then
        return user.show(calls.one(client, "list_user_devices", app, args.user_id))
    end
    local req, problem = user.request(args)
    if not req then
        return nil, problem
    end
    if command == "create" then
        return user.show(calls.one(client, "create_user", app, req))
    end
    return user.show(calls.one(client, "update_user", app, args.user_id, req))
end

return user
