--- The command's configuration: key, app and base URL from the flags or
-- the environment, and the client made from them.
--
-- The key is registered as a secret of `passage.cli.output` before anything
-- else happens, and only ever described as "from PASSAGE_API_KEY" or "from
-- --api-key". A base URL is described as the library shows it, without
-- its user and password.
-- @module passage.cli.config
local users = require "passage.users"
local output = require "passage.cli.output"

local config = {}

local function from(flag_value, variable, flag)
    if flag_value ~= nil and flag_value ~= "" then
        return flag_value, flag
    end
    local v = os.getenv(variable)
    if v ~= nil and v ~= "" then
        return v, variable
    end
    return nil
end

--- Registers every secret the command line or the environment holds, before
-- anything is parsed or printed.
-- @tparam {string,...} argv the command line
function config.hide_secrets(argv)
    output.secret(os.getenv("PASSAGE_API_KEY"))
    for i, a in ipairs(argv) do
        if a == "--api-key" then
            output.secret(argv[i + 1])
        else
            output.secret(a:match("^%-%-api%-key=(.*)$"))
        end
    end
    for _, url in ipairs { os.getenv("PASSAGE_BASE_URL") or "", table.concat(argv, " ") } do
        for userinfo in url:gmatch("%a[%w+.-]*://([^/@%s]*)@") do
            output.secret(userinfo)
            output.secret(userinfo:match(":(.*)$"))
        end
    end
end

-- `-v`: one line on stderr per HTTP attempt, from the library's own hook:
-- method, path, outcome, time, and whether another attempt follows.
local function trace_attempt(a)
    local outcome = a.status and ("HTTP " .. a.status) or a.kind or "no answer"
    if a.kind and a.status then
        outcome = outcome .. " " .. a.kind
    end
    output.say("%s %s: %s, %d ms%s", a.method, a.path, outcome, math.floor(a.ms + 0.5),
        a.retry and ", retrying" or "")
end

--- The client and app id for parsed arguments.
-- @tparam table args the parsed command line
-- @return a `passage.users` client, the app id and a description for
--   `--verbose`; or nil and a usage message
function config.client(args)
    local key, key_source = from(args.api_key, "PASSAGE_API_KEY", "--api-key")
    if not key then
        return nil, "no API key: set PASSAGE_API_KEY (or pass --api-key)"
    end
    output.secret(key)
    local app_id, app_source = from(args.app_id, "PASSAGE_APP_ID", "--app-id")
    if not app_id then
        return nil, "no app id: set PASSAGE_APP_ID (or pass --app-id)"
    end
    local base_url = from(args.base_url, "PASSAGE_BASE_URL", "--base-url")
    local ok, client = pcall(users.new, {
        api_key = key,
        base_url = base_url,
        timeout_ms = args.timeout_ms,
        user_agent = "passage-users/" .. users._VERSION,
        on_attempt = args.verbose and trace_attempt or nil,
    })
    if not ok then
        return nil, (tostring(client):gsub("^.-passage%.users: new: ", ""))
    end
    -- The library shows a client's base URL without its user and password.
    local shown = tostring(client):match("^passage%.users client %((.*)%)$") or "the API"
    local described = string.format("%s, app %s (from %s), API key from %s", shown, app_id,
        app_source, key_source)
    return client, app_id, described
end

return config
