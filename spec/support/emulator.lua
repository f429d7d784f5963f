-- Spec helper for the local Passage API emulator (emulator/): where it is,
-- starting it (through passage.emulator.control, the passage-emulator
-- command's module, on PASSAGE_EMULATOR_PORT), and its admin API (reset,
-- apps, seed, faults, stats), over real HTTP with luasocket.
local http = require("socket.http")
local ltn12 = require("ltn12")
local cjson = require("cjson")

local M = {}

M.started_here = false

function M.port()
  return tonumber(os.getenv("PASSAGE_EMULATOR_PORT") or "") or 8787
end

function M.root_url()
  return "http://127.0.0.1:" .. M.port()
end

-- Base URL of the API, as a client is configured with.
function M.url()
  return M.root_url() .. "/v1"
end

-- A passage.users client of this emulator (app test_app, key test_key):
-- `defaults` are the calling spec's own settings, `opts` one test's.
function M.client(opts, defaults)
  local o = { api_key = "test_key", base_url = M.url(), timeout_ms = 5000 }
  for _, t in ipairs({ defaults or {}, opts or {} }) do
    for k, v in pairs(t) do
      o[k] = v
    end
  end
  return require("passage.users").new(o)
end

function M.admin_url(path)
  return M.root_url() .. "/__emulator/" .. (path or ""):gsub("^/", "")
end

-- One HTTP request. opts: method, headers, body (string) or json (table).
-- Returns status (number or nil), body (string), headers (lower-cased), error.
function M.request(url, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  local body = opts.body
  if opts.json ~= nil then
    body = cjson.encode(opts.json)
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  if body then headers["content-length"] = tostring(#body) end
  local chunks = {}
  local ok, status, resp_headers = http.request({
    url = url,
    method = opts.method or (body and "POST" or "GET"),
    headers = headers,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
  })
  if not ok then return nil, table.concat(chunks), {}, status end
  return status, table.concat(chunks), resp_headers or {}
end

-- Like request, with the body decoded as JSON (nil when it is not JSON).
function M.request_json(url, opts)
  local status, body, headers, err = M.request(url, opts)
  local ok, decoded = pcall(cjson.decode, body or "")
  return status, ok and decoded or nil, headers, body, err
end

local function admin(path, tbl, method)
  local status, decoded, _, raw = M.request_json(M.admin_url(path), {
    method = method or "POST", json = tbl,
  })
  if status ~= 200 and status ~= 201 then
    error(string.format("emulator admin %s failed: %s %s", path, tostring(status), tostring(raw)), 2)
  end
  return decoded
end

-- A request over a bare TCP socket, reading exactly what the server sends, for
-- specs that look at broken transfers. Returns { status, headers (lower-cased),
-- body, content_length, complete (body length matches Content-Length and the
-- transfer ended normally), elapsed (seconds) }.
function M.raw(method, path, opts)
  opts = opts or {}
  local socket = require("socket")
  local t0 = socket.gettime()
  local c = assert(socket.connect("127.0.0.1", M.port()))
  c:settimeout(opts.timeout or 10)
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: close" }
  for k, v in pairs(opts.headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  local body = opts.body
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  assert(c:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  local res = { headers = {} }
  local line = c:receive("*l")
  res.status = line and tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
  while true do
    line = c:receive("*l")
    if not line or line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then res.headers[k:lower()] = v end
  end
  res.content_length = tonumber(res.headers["content-length"])
  local data, err, partial = c:receive("*a")
  c:close()
  res.body = data or partial or ""
  res.error = err
  res.elapsed = socket.gettime() - t0
  res.complete = res.content_length == nil or #res.body == res.content_length
  return res
end

-- nginx's error log of the emulator on the port (when it runs from its
-- default place).
function M.error_log()
  return require("passage.emulator.control").paths(M.port()).log
end

function M.answering()
  local status = M.request(M.admin_url("stats"))
  return status == 200
end

-- Starts the emulator unless one already answers on the port.
function M.ensure()
  local ok, message, started = require("passage.emulator.control").start({ port = M.port() })
  assert(ok, message)
  if started then
    print(message)
    M.started_here = true
  end
  return true
end

-- Stops the emulator if ensure() started it.
function M.stop_if_started()
  if M.started_here then
    local _, message = require("passage.emulator.control").stop({ port = M.port() })
    print(message)
    M.started_here = false
  end
end

function M.reset(empty)
  return admin("reset", empty and { empty = true } or {})
end

function M.add_app(id, key)
  return admin("apps", { app_id = id, api_key = key })
end

function M.seed(app_id, n, seed)
  return admin("seed", { app_id = app_id, count = n, seed = seed })
end

-- A fresh emulator holding only app_id's n seeded users; returns their ids
-- in the order a walk gives them.
function M.seeded_ids(app_id, n, seed)
  M.reset()
  M.seed(app_id, n, seed)
  local client = M.client()
  local ids = {}
  for user in require("passage.paginator").users(client, app_id, nil, { in_flight = 4 }) do
    ids[#ids + 1] = user.id
  end
  client:close()
  return ids
end

-- POST /__emulator/faults with tbl; returns the fault state after the change.
function M.faults(tbl)
  return admin("faults", tbl or {})
end

function M.stats()
  return admin("stats", nil, "GET")
end

function M.reset_stats()
  return admin("stats/reset", {})
end

-- Count of answers for one route template and status in stats().
function M.count(stats, route, status)
  local r = stats.routes[route]
  return r and r[tostring(status)] or 0
end

return M
