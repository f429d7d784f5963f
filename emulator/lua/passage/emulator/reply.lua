-- Responses as the handler returns them: plain tables
-- { status = 200, headers = { ["Content-Type"] = ... }, body = "..." },
-- every error body {"code": ..., "error": ...}.
local json = require("passage.emulator.json")

local M = {}

local JSON_HEADERS = { ["Content-Type"] = "application/json" }

function M.json(status, body)
  return { status = status, headers = JSON_HEADERS, body = body or "" }
end

function M.error(status, code, message, extra_headers)
  local r = M.json(status, json.encode({ code = code, error = message }))
  if extra_headers then
    local h = { ["Content-Type"] = "application/json" }
    for k, v in pairs(extra_headers) do h[k] = v end
    r.headers = h
  end
  return r
end

function M.invalid(message)
  return M.error(400, "invalid_request", message)
end

-- The answer to a failure inside the emulator (a bug, or an injected crash):
-- a 500 whose body says nothing about the server, the cause in resp.log for
-- the adapter to write to the server's error log.
function M.internal(req, route, cause)
  local r = M.error(500, "internal_server_error", "internal error in the emulator")
  r.log = "emulator: " .. tostring(req.method) .. " " .. tostring(route) .. ": " .. tostring(cause)
  return r
end

return M
