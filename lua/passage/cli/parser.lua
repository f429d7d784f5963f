--- The command line of `passage-users`: the global options, and every
-- command of `passage.cli.command_list`, each set up by its own module.
-- @module passage.cli.parser
local argparse = require "argparse"
local users = require "passage.users"
local command_list = require "passage.cli.command_list"

local parser_module = {}

local unpack = table.unpack or unpack -- luacheck: globals unpack

local EPILOG = [[
Configuration: PASSAGE_API_KEY, PASSAGE_APP_ID and PASSAGE_BASE_URL, or the
flags --api-key, --app-id and --base-url (a flag wins). Prefer the variable
for the key: a flag's value shows in the process list. The key is never
printed, not even with --verbose.

Filters (list, export, --where): [op:]value with op one of ne, gt, lt, like,
not_like (eq: for a plain value), as the API takes them, e.g.
  --status active --login-count gt:5 --created-at lt:2024-01-01T00:00:00Z
  --where identifier=like:%@old.example

Every operation of the library is also a command named after it with
dashes (get-user, list-paginated-users, ...).

Exit status: 0 every call succeeded; 1 some calls failed (or a run
stopped on an error); 2 usage (bad arguments, missing configuration, not
confirmed); 130/143 stopped by SIGINT/SIGTERM.]]

local function global_options(p)
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
end

--- A new parser for the command line.
-- @treturn table an argparse parser
function parser_module.new()
    local p = argparse("passage-users", "User administration for the Passage Management API v1.")
        :epilog(EPILOG)
        :command_target("command")
        :help_max_width(100)
    global_options(p)
    for _, entry in ipairs(command_list) do
        local names = table.concat({ entry.name, unpack(entry.aliases or {}) }, " ")
        local cmd = p:command(names)
        require("passage.cli.commands." .. entry.module).setup(cmd, entry)
    end
    p:add_complete_command { summary = "Print a shell completion script (bash, zsh or fish)." }
    return p
end

return parser_module
