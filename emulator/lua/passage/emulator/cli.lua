-- The passage-emulator command:
--
--   passage-emulator start|stop|status [--port N] [--prefix DIR]
--   passage-emulator run [--port N] [--prefix DIR] -- COMMAND [ARG...]
--   passage-emulator seed --app-id A --count N [--seed S] [--api-key K] [--port N]
--
-- main(args) returns the exit status; bin/passage-emulator passes it to os.exit.
local control = require("passage.emulator.control")
local json = require("passage.emulator.json")

local M = {}

M.USAGE = [[
usage: passage-emulator <command> [--port N] [--prefix DIR]

  start            start the emulator unless one already answers on the port
  stop             stop the emulator started from the runtime directory
  status           exit 0 when an emulator answers on the port, 1 when not
  run -- CMD ...   start it unless one answers, run CMD, then stop it only
                   if this call started it; exits with CMD's status
  seed             add N realistic users to an app of the running emulator:
                   --app-id A --count N [--seed S] [--api-key K] (with a key,
                   the app is made first when it is not there)

  --port N         port on 127.0.0.1 (default: PASSAGE_EMULATOR_PORT, else 8787)
  --prefix DIR     where nginx keeps its configuration, pid file and logs
                   (default: $XDG_RUNTIME_DIR, else $TMPDIR or /tmp,
                   /passage-emulator-<port>)

The API answers at http://127.0.0.1:<port>/v1 (app test_app, key test_key).
]]

local COMMANDS = { start = true, stop = true, status = true, run = true, seed = true }

-- The options of seed, and whether each is a whole number.
local SEED_OPTIONS = { ["app-id"] = false, count = true, seed = true, ["api-key"] = false }

-- Parses args; returns command, options, argv (for run) or nil, message.
function M.parse(args)
  local command, opts, argv = nil, {}, nil
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-([%a%-]+)=(.*)$")
    if not name then
      name = a:match("^%-%-([%a%-]+)$")
      if name == "port" or name == "prefix" or SEED_OPTIONS[name] ~= nil then
        i = i + 1
        value = args[i]
        if value == nil then return nil, "--" .. name .. " needs a value" end
      end
    end
    if a == "--" then
      argv = {}
      for j = i + 1, #args do argv[#argv + 1] = args[j] end
      break
    elseif a == "-h" or a == "--help" then
      return "help", opts
    elseif name == "port" then
      local p = tonumber(value)
      if not p or p % 1 ~= 0 or p < 1 or p > 65535 then
        return nil, "--port must be an integer 1..65535"
      end
      opts.port = math.floor(p)
    elseif name == "prefix" then
      if value:sub(1, 1) ~= "/" then
        local pwd = os.getenv("PWD")
        if not pwd then return nil, "--prefix must be an absolute path" end
        value = pwd .. "/" .. value
      end
      opts.prefix = value
    elseif SEED_OPTIONS[name] ~= nil then
      if SEED_OPTIONS[name] then
        local n = tonumber(value)
        if not n or n % 1 ~= 0 or n < 0 then return nil, "--" .. name .. " must be a whole number" end
        value = math.floor(n)
      end
      opts[name:gsub("%-", "_")] = value
    elseif COMMANDS[a] and not command then
      command = a
    else
      return nil, "unexpected argument " .. a
    end
    i = i + 1
  end
  if not command then return nil, "a command is needed" end
  if command == "run" and not (argv and argv[1]) then return nil, "run needs -- COMMAND" end
  if command ~= "run" and argv then return nil, "only run takes a command after --" end
  if command == "seed" and not (opts.app_id and opts.count) then
    return nil, "seed needs --app-id and --count"
  end
  if command ~= "seed" and (opts.app_id or opts.count or opts.seed or opts.api_key) then
    return nil, "only seed takes --app-id, --count, --seed and --api-key"
  end
  return command, opts, argv
end

-- POST of a JSON body to the emulator's admin API; returns the status and
-- the decoded answer (or its text).
local function admin_post(port, path, body)
  local http = require("socket.http")
  local ltn12 = require("ltn12")
  local text = json.encode(body)
  local chunks = {}
  local _, status = http.request({
    url = "http://127.0.0.1:" .. port .. "/__emulator/" .. path, method = "POST",
    headers = { ["content-type"] = "application/json", ["content-length"] = tostring(#text) },
    source = ltn12.source.string(text), sink = ltn12.sink.table(chunks),
  })
  local answer = table.concat(chunks)
  return status, json.decode(answer) or answer
end

-- seed: users for an app of the emulator that answers on the port.
local function seed(opts)
  local port = opts.port or control.port()
  if not control.answering(port) then
    return nil, "no emulator answers on port " .. port .. " (passage-emulator start)"
  end
  if opts.api_key then
    local status, answer = admin_post(port, "apps", { app_id = opts.app_id, api_key = opts.api_key })
    if status ~= 200 and status ~= 201 then
      return nil, "apps: HTTP " .. tostring(status) .. " " .. json.encode(answer)
    end
  end
  local status, answer = admin_post(port, "seed", { app_id = opts.app_id, count = opts.count,
    seed = opts.seed })
  if status == 404 then
    return nil, "no app " .. opts.app_id .. " (give --api-key to make it)"
  elseif status ~= 200 or type(answer) ~= "table" then
    return nil, "seed: HTTP " .. tostring(status) .. " " .. tostring(answer)
  end
  return true, string.format("seeded %d users into %s (%d in all)", answer.created, answer.app_id,
    answer.total_users)
end

function M.main(args)
  local command, opts, argv = M.parse(args or {})
  if command == "help" then
    io.stdout:write(M.USAGE)
    return 0
  end
  if not command then
    io.stderr:write("passage-emulator: ", opts, "\n", M.USAGE)
    return 2
  end
  if command == "run" then return control.run(opts, argv) end
  local ok, message
  if command == "seed" then
    ok, message = seed(opts)
  else
    ok, message = control[command](opts)
  end
  if ok then
    io.stdout:write(message, "\n")
    return 0
  end
  io.stderr:write(message, "\n")
  return 1
end

return M
