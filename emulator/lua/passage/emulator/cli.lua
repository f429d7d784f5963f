-- The passage-emulator command:
--
--   passage-emulator start|stop|status [--port N] [--prefix DIR]
--   passage-emulator run [--port N] [--prefix DIR] -- COMMAND [ARG...]
--
-- main(args) returns the exit status; bin/passage-emulator passes it to os.exit.
local control = require("passage.emulator.control")

local M = {}

M.USAGE = [[
usage: passage-emulator <command> [--port N] [--prefix DIR]

  start            start the emulator unless one already answers on the port
  stop             stop the emulator started from the runtime directory
  status           exit 0 when an emulator answers on the port, 1 when not
  run -- CMD ...   start it unless one answers, run CMD, then stop it only
                   if this call started it; exits with CMD's status

  --port N         port on 127.0.0.1 (default: PASSAGE_EMULATOR_PORT, else 8787)
  --prefix DIR     where nginx keeps its configuration, pid file and logs
                   (default: $XDG_RUNTIME_DIR, else $TMPDIR or /tmp,
                   /passage-emulator-<port>)

The API answers at http://127.0.0.1:<port>/v1 (app test_app, key test_key).
]]

local COMMANDS = { start = true, stop = true, status = true, run = true }

-- Parses args; returns command, options, argv (for run) or nil, message.
function M.parse(args)
  local command, opts, argv = nil, {}, nil
  local i = 1
  while i <= #args do
    local a = args[i]
    local name, value = a:match("^%-%-(%a+)=(.*)$")
    if not name then
      name = a:match("^%-%-(%a+)$")
      if name == "port" or name == "prefix" then
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
  return command, opts, argv
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
  local ok, message = control[command](opts)
  if ok then
    io.stdout:write(message, "\n")
    return 0
  end
  io.stderr:write(message, "\n")
  return 1
end

return M
