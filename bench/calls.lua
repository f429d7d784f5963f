-- Call benchmark: CPU time of a whole client:get_user and
-- client:list_paginated_users(app, { limit = 500 }) call against the raw
-- libcurl loop (bench/raw_curl.c: the same GETs on one reused easy handle,
-- bodies kept but never parsed), on the same server and URLs.
--
--   make bench            (starts and seeds an emulator; see bench/run.lua)
--   lua5.4 bench/calls.lua BASE_URL APP_ID API_KEY USER_IDS RAW_CURL [PAGE_FILE [PEER]]
--
-- USER_IDS: one user id, or several separated by commas; each gets its own
-- get_user rows (answers of different sizes weigh the decode differently).
--
-- PEER, when given, is the command of a get_user peer (bench/lua_curl_peer.lua
-- under LuaJIT: Debian's lua-curl and lua-cjson), run in each round too and
-- reported as passage/peer. The raw loop and the peer send the request
-- headers passage.users sends (its key, User-Agent and REQUEST_HEADERS), so
-- the three make the same HTTP exchange: libcurl spends about 3,000
-- instructions on each header line it sends.
--
-- CPU time is os.clock here and getrusage(RUSAGE_SELF) in raw_curl, both
-- user + system time of the measuring process only (the server's CPU is not
-- counted on either side). Each round runs the raw loop and the client back
-- to back with the same number of requests; the best round of each is
-- reported. BENCH_ROUNDS, BENCH_GETS and BENCH_LISTS tune it.
--
-- list_paginated_users also decodes and checks a 185 KB body the raw loop
-- never parses, so it is compared against raw + decode too, the decode being
-- passage.core's decoder on the same bytes (PAGE_FILE), timed here.
local users = require("passage.users")
local core = require("passage.core")

local unpack_args = table.unpack or unpack -- luacheck: globals unpack
local base_url, app_id, api_key, user_ids, raw_curl, page_file, peer_cmd = unpack_args(arg or {}, 1, 7)
if page_file == "" then
  page_file = nil
end
if not raw_curl then
  io.stderr:write("usage: calls.lua BASE_URL APP_ID API_KEY USER_ID RAW_CURL [PAGE_FILE]\n")
  os.exit(2)
end

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 7
local GETS = tonumber(os.getenv("BENCH_GETS")) or 2000
local LISTS = tonumber(os.getenv("BENCH_LISTS")) or 100
local LIMIT = 500

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local libcurl = "?"

-- The header lines of every request, as passage.users sends them: the raw
-- loop and the peer send the same, so all three make the same exchange.
local HEADERS = { "Authorization: Bearer " .. api_key,
  "User-Agent: " .. require("passage.options").resolve({ api_key = api_key }).transport.user_agent }
for _, line in ipairs(users.REQUEST_HEADERS) do
  HEADERS[#HEADERS + 1] = line
end
local quoted_headers = {}
for i, line in ipairs(HEADERS) do
  quoted_headers[i] = shell_quote(line)
end
quoted_headers = table.concat(quoted_headers, " ")

-- The raw loop's CPU microseconds per request, and the body size it saw.
local function raw(url, n)
  local cmd = table.concat({ shell_quote(raw_curl), shell_quote(url), tostring(n), quoted_headers },
    " ")
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local us, bytes, version = out:match("cpu_us_per_request ([%d%.]+) bytes (%d+) libcurl (%S+)")
  if not us then
    error("raw_curl failed: " .. cmd)
  end
  libcurl = version
  return tonumber(us), tonumber(bytes)
end

-- The peer's CPU microseconds per get_user (its own process, as raw()).
local function peer(user_id, n)
  local cmd = table.concat({ peer_cmd, shell_quote(base_url), shell_quote(app_id),
    shell_quote(user_id), tostring(n), quoted_headers }, " ")
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local us = out:match("cpu_us_per_request ([%d%.]+)")
  if not us then
    error("the peer failed: " .. cmd)
  end
  return tonumber(us)
end

-- CPU microseconds per call of fn, n calls.
local function ours(fn, n)
  collectgarbage("collect")
  local t0 = os.clock()
  for _ = 1, n do
    fn()
  end
  return (os.clock() - t0) / n * 1e6
end

local client = users.new({ api_key = api_key, base_url = base_url, max_attempts = 1 })

-- Each user whose get_user is measured: its id, URL, the client's call,
-- and the best CPU per call of each side.
local targets = {}
for user_id in user_ids:gmatch("[^,]+") do
  targets[#targets + 1] = {
    id = user_id,
    url = base_url .. "/apps/" .. app_id .. "/users/" .. user_id,
    call = function()
      local u, err = client:get_user(app_id, user_id)
      if not u then
        error("get_user: " .. tostring(err))
      end
    end,
    raw = math.huge, ours = math.huge, peer = math.huge,
  }
end

local function list()
  local page, err = client:list_paginated_users(app_id, { limit = LIMIT })
  if not page then
    error("list_paginated_users: " .. tostring(err))
  end
  assert(#page.users == LIMIT, "the page is not full: seed more users")
end

local list_url = base_url .. "/apps/" .. app_id .. "/users?limit=" .. LIMIT

local page
if page_file then
  local f = assert(io.open(page_file, "rb"))
  page = f:read("*a")
  f:close()
end
local decoder = core.decoder()

-- Warm up both sides (connection, caches) before the first round.
for _, t in ipairs(targets) do
  t.call()
  t.bytes = select(2, raw(t.url, 10))
end
list()
local _, page_bytes = raw(list_url, 2)

local best = { raw_list = math.huge, list = math.huge, decode = math.huge }
local function keep(where, name, v)
  if v < where[name] then
    where[name] = v
  end
end

for _ = 1, ROUNDS do
  for _, t in ipairs(targets) do
    keep(t, "raw", raw(t.url, GETS))
    keep(t, "ours", ours(t.call, GETS))
    if peer_cmd then
      keep(t, "peer", peer(t.id, GETS))
    end
  end
  keep(best, "raw_list", raw(list_url, LISTS))
  keep(best, "list", ours(list, LISTS))
  if page then
    keep(best, "decode", ours(function()
      decoder:decode(page)
    end, LISTS))
  end
end

local lua_name = rawget(_G, "jit") and rawget(_G, "jit").version or _VERSION
print(string.format("%s, libcurl %s; %d rounds of %d get_user and %d list calls each side, "
  .. "best round, CPU per call", lua_name, libcurl,
  ROUNDS, GETS, LISTS))
for _, t in ipairs(targets) do
  print(string.format("get_user (%5d B body)        passage %8.1f us   raw libcurl %8.1f us"
    .. "   passage/raw %.2fx", t.bytes, t.ours, t.raw, t.ours / t.raw))
  if peer_cmd then
    print(string.format("get_user (%5d B body)        passage %8.1f us   lua-curl+cjson %5.1f us"
      .. "   passage/peer %.2fx", t.bytes, t.ours, t.peer, t.ours / t.peer))
  end
end
print(string.format("list_paginated_users (%d KB)  passage %8.1f us   raw libcurl %8.1f us"
  .. "   passage/raw %.2fx", math.floor(page_bytes / 1024), best.list, best.raw_list,
  best.list / best.raw_list))
if page then
  local floor = best.raw_list + best.decode
  print(string.format("list_paginated_users          passage %8.1f us   raw + decode %7.1f us"
    .. "   passage/(raw+decode) %.2fx", best.list, floor, best.list / floor))
end
client:close()
