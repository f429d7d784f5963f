--- The command line of `passage-users`: every command, option and its help.
-- @module passage.cli.parser
local argparse = require "argparse"
local users = require "passage.users"
local restore = require "passage.cli.restore"
local where = require "passage.cli.where"

local parser_module = {}

local EPILOG = [[
Configuration: PASSAGE_API_KEY, PASSAGE_APP_ID and PASSAGE_BASE_URL, or the
flags --api-key, --app-id and --base-url (a flag wins). Prefer the variable
for the key: a flag's value shows in the process list. The key is never
printed, not even with --verbose.

Filters (list, export, --where): [op:]value with op one of ne, gt, lt, like,
not_like (eq: for a plain value), as the API takes them, e.g.
  --status active --login-count gt:5 --created-at lt:2024-01-01T00:00:00Z
  --where identifier=like:%@old.example

Exit status: 0 every call succeeded; 1 some calls failed (or a run was
stopped); 2 usage (bad arguments, missing configuration, not confirmed).]]

local function filter_options(cmd)
    for _, field in ipairs(where.FIELDS) do
        local flag = "--" .. field:gsub("_", "-")
        cmd:option(flag):argname("<[op:]value>"):description("filter on " .. field)
    end
end

local function where_option(cmd)
    cmd:option("--where"):count("*"):argname("<field=[op:]value>")
        :description("a filter; repeat for more (fields: " .. table.concat(where.FIELDS, ", ") .. ")")
end

local function csv_raw_option(cmd, what)
    cmd:flag("--csv-raw"):description(what)
end

local function in_flight_option(cmd, default, what)
    cmd:option("--in-flight"):argname("<n>"):default(tostring(default))
        :convert(tonumber):description(what)
end

local function user_fields(cmd)
    cmd:option("--email"):description("email address")
    cmd:option("--phone"):description("phone number, E.164 (+14155552671)")
    cmd:option("--metadata"):count("*"):argname("<key=value>")
        :description("a user_metadata string; repeat for more")
    cmd:option("--metadata-json"):argname("<object>")
        :description("user_metadata as a JSON object (numbers, booleans)")
end

local function change_command(p, name, summary)
    local cmd = p:command(name):summary(summary .. ".")
        :description(summary .. ": the users given by id, or every user a --where filter matches "
            .. "(after a count and a confirmation, unless --yes). One result line per user.")
    cmd:argument("user_id"):args("*"):description("user ids")
    where_option(cmd)
    cmd:flag("-y --yes"):description("do not ask for confirmation")
    in_flight_option(cmd, 16, "calls in flight at once")
    return cmd
end

--- A new parser for the command line.
-- @treturn table an argparse parser
function parser_module.new()
    local p = argparse("passage-users", "User administration for the Passage Management API v1.")
        :epilog(EPILOG)
        :command_target("command")
        :help_max_width(100)
    p:option("--api-key"):argname("<key>"):description("API key (default: PASSAGE_API_KEY)")
    p:option("--app-id"):argname("<app>"):description("app id (default: PASSAGE_APP_ID)")
    p:option("--base-url"):argname("<url>")
        :description("API base URL (default: PASSAGE_BASE_URL, else https://api.passage.id/v1)")
    p:option("--timeout-ms"):argname("<ms>"):convert(tonumber)
        :description("longest time for one call, retries included")
    p:flag("-v --verbose"):description("say more on stderr (never the key)")
    p:flag("-q --quiet"):description("no summary and no progress bar: only errors on stderr")
    p:flag("--no-progress"):description("no progress bar, even on a terminal")
    p:flag("--version"):description("print the version and exit"):action(function()
        io.stdout:write(string.format("passage-users %s (%s)\n", users._VERSION, _VERSION))
        os.exit(0)
    end)

    p:command("get"):summary("Show a user."):argument("user_id")
    p:command("find"):summary("Show the user with an email or phone.")
        :argument("identifier"):description("email address or phone number")
    user_fields(p:command("create"):summary("Create a user."))
    local update = p:command("update"):summary("Update a user's email, phone or metadata.")
    update:argument("user_id")
    user_fields(update)
    change_command(p, "delete", "Delete users")
    change_command(p, "activate", "Activate users")
    change_command(p, "deactivate", "Deactivate users")
    change_command(p, "revoke-tokens", "Revoke users' refresh tokens")
    p:command("devices"):summary("List a user's devices."):argument("user_id")
    local dd = p:command("delete-device"):summary("Delete one of a user's devices.")
    dd:argument("user_id")
    dd:argument("device_id")

    local list = p:command("list"):summary("List one page of users.")
        :description("List one page of users, filtered and ordered. A table on a terminal, "
            .. "JSON Lines otherwise.")
    filter_options(list)
    where_option(list)
    list:option("--order-by"):argname("<field:ASC|DESC,...>")
    list:option("--limit"):argname("<n>"):convert(tonumber):description("users per page (1..500)")
    list:option("--page"):argname("<n>"):convert(tonumber)
    list:option("--created-before"):argname("<unix seconds>"):convert(tonumber)
    csv_raw_option(list, "CSV cells as they are: no ' before a formula-like value")
    list:option("--format"):choices { "table", "json", "jsonl", "csv" }
        :description("table, json, jsonl or csv (default: table on a terminal, else jsonl)")

    local export = p:command("export"):summary("Write every matching user, one per line.")
        :description("Walk every matching user (each exactly once) and write one per line.")
    filter_options(export)
    where_option(export)
    export:option("--order-by"):argname("<field:ASC|DESC,...>")
    in_flight_option(export, 4, "pages in flight at once")
    export:option("-o --out"):argname("<file>"):description("write here (default: stdout)")
    export:option("--format"):choices { "jsonl", "csv" }:default("jsonl")
    csv_raw_option(export, "CSV cells as they are: no ' before a value a spreadsheet would run "
        .. "as a formula (=, +, -, @)")

    local import = p:command("import bulk"):summary("Create or update users from a file.")
        :description("Read JSON Lines or CSV records and run each: a record with an id "
            .. "updates that user, one without creates one; an `op` field (create, update, "
            .. "delete, activate, deactivate, revoke-tokens, delete-device) says otherwise. "
            .. "Writes one result line per record (its line number, and the user id or the "
            .. "error).")
    import:argument("file"):description("input file, - for stdin")
    import:option("--input-format"):choices { "jsonl", "csv" }
        :description("jsonl or csv (default: by the file name, else jsonl)")
    in_flight_option(import, 16, "calls in flight at once")
    import:flag("-n --dry-run"):description("check every record and show what would be sent; "
        .. "send nothing")
    import:option("--rerun"):argname("<results>")
        :description("run only the records that failed in these results of an earlier run")
    import:option("--results"):argname("<file>"):description("write results here (default: stdout)")
    csv_raw_option(import, "CSV cells as they are: do not remove the ' an export puts before "
        .. "a formula-like value")
    import:flag("--restore"):description("read an export back: find each user by email (else "
        .. "phone), ignore ids, create the missing ones with their metadata and status")
    import:option("--on-exists"):choices(restore.ON_EXISTS)
        :description("for a user that already exists: skip, update or fail (default with "
            .. "--restore: fail); without --restore, for records that create users")
    p:add_complete_command { summary = "Print a shell completion script (bash, zsh or fish)." }
    return p
end

return parser_module
