-- `make bench`: the decoder and call benchmarks, against the emulator.
--
--   lua5.4 bench/run.lua [LUA [FLAVOUR]]   (LUA runs the benchmarks; default lua5.4)
--
-- Starts an emulator on PASSAGE_EMULATOR_PORT unless one answers there,
-- registers the app bench_app and seeds it up to 600 users, saves a real
-- 500-user page and one real user response with the raw libcurl loop
-- (build/bench/), then runs bench/decode.lua on those bytes and
-- bench/calls.lua on the same server (get_user for the first user and for
-- the first with recent events), and stops the emulator if it started it.
-- Runs from the repository root.
local control = require("passage.emulator.control")
local cjson = require("cjson")

local LUA = arg[1] or "lua5.4"
local FLAVOUR = arg[2] or "5.4"
-- The CPU the client (with its raw and peer loops) and the emulator the
-- bench started are pinned to (taskset), so that the figures of one run
-- compare on one core; "" leaves them unpinned.
local CPU = os.getenv("BENCH_CPU") or "0"
local APP, KEY, USERS = "bench_app", "bench_key", 600
local RAW_CURL = "build/bench/raw_curl"
local PAGE, USER = "build/bench/page.json", "build/bench/user.json"

local function run(cmd)
  local ok, _, code = os.execute(cmd)
  if type(ok) == "number" then return ok == 0 end
  return ok == true and (code == nil or code == 0)
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- What the helper commands print and nobody reads: a temporary file, made
-- once the emulator answers, removed at the end.
local LOG

local port = control.port()
local root = "http://127.0.0.1:" .. port
local base = root .. "/v1"

-- POST to the emulator's admin API; the decoded answer.
local function admin(path, body)
  local p = assert(io.popen("curl -sS -X POST " .. shell_quote(root .. "/__emulator/" .. path)
    .. " -d " .. shell_quote(cjson.encode(body))))
  local out = p:read("*a")
  p:close()
  local ok, v = pcall(cjson.decode, out)
  if not ok then error("emulator admin " .. path .. ": " .. out) end
  return v
end

local function save(url, file)
  assert(run(table.concat({ RAW_CURL, "-o", file, shell_quote(url), "1",
    shell_quote("Authorization: Bearer " .. KEY) }, " ")
    .. " >" .. shell_quote(LOG)), "cannot fetch " .. url)
  local f = assert(io.open(file, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local started = false
if not control.answering(port) then
  assert(control.start(), "cannot start the emulator")
  started = true
end

-- Pins the emulator this run started (its master and worker processes) to
-- CPU; one that was already answering is someone else's and left alone.
local function pin_emulator()
  if CPU == "" or not started then
    return "not pinned"
  end
  local f = assert(io.open(control.paths(port).pid))
  local master = assert(tonumber(f:read("*l")), "no pid in the emulator's pid file")
  f:close()
  local log = shell_quote(LOG)
  local ok = run("taskset -a -cp " .. CPU .. " " .. master .. " >" .. log .. " && for w in $(pgrep -P "
    .. master .. "); do taskset -a -cp " .. CPU .. " $w >" .. log .. " || exit 1; done")
  return ok and "pinned to CPU " .. CPU or "could not be pinned"
end

-- The get_user peer: Debian's lua-curl with lua-cjson under LuaJIT, when
-- both are there.
local function peer_command()
  if run("luajit -e 'require \"curl\"; require \"cjson\"' >" .. shell_quote(LOG) .. " 2>&1") then
    return "luajit bench/lua_curl_peer.lua"
  end
end

LOG = os.tmpname()
local ok, err = pcall(function()
  admin("apps", { app_id = APP, api_key = KEY })
  local listing = save(base .. "/apps/" .. APP .. "/users?limit=1", PAGE)
  local have = cjson.decode(listing).total_users or 0
  if have < USERS then
    admin("seed", { app_id = APP, count = USERS - have, seed = 6 })
  end
  local page = cjson.decode(save(base .. "/apps/" .. APP .. "/users?limit=500", PAGE))
  local user_id = assert(page.users[1] and page.users[1].id, "no users")
  -- get_user is measured for that user and for the first with recent events
  -- too: a larger answer, where the decode weighs more.
  local user_ids = { user_id }
  for i = 2, math.min(#page.users, 50) do -- a list's users carry no events: ask each
    local id = page.users[i].id
    local answer = cjson.decode(save(base .. "/apps/" .. APP .. "/users/" .. id, USER))
    if #answer.user.recent_events > 0 then
      user_ids[2] = id
      break
    end
  end
  save(base .. "/apps/" .. APP .. "/users/" .. user_id, USER) -- decode.lua's user

  local env = "LUA_PATH='lua/?.lua;lua/?/init.lua;bench/?.lua;;' LUA_CPATH='build/"
    .. FLAVOUR .. "/?.so;;' "
  print("== decoder: passage.core vs lua-cjson, on the emulator's responses")
  assert(run(env .. LUA .. " bench/decode.lua " .. PAGE .. " " .. USER), "decode.lua failed")
  local peer = peer_command()
  local pin = CPU ~= "" and "taskset -c " .. CPU .. " " or ""
  print("\n== calls: passage.users vs the raw libcurl loop" .. (peer and " and lua-curl + lua-cjson"
    or " (no lua-curl peer: it needs luajit with Debian's lua-curl and lua-cjson)")
    .. ", same server and URLs; client " .. (pin ~= "" and "pinned to CPU " .. CPU or "not pinned")
    .. ", emulator " .. pin_emulator())
  assert(run(env .. pin .. LUA .. " bench/calls.lua " .. table.concat({ shell_quote(base), APP, KEY,
    shell_quote(table.concat(user_ids, ",")), RAW_CURL, PAGE, peer and shell_quote(peer) or "" },
    " ")),
    "calls.lua failed")
  print("\nreproduce: make bench" .. (FLAVOUR ~= "5.4" and " LUA_VERSION=" .. FLAVOUR or "")
    .. "   (BENCH_PORT=" .. port .. ", BENCH_CPU=" .. CPU
    .. "; BENCH_ROUNDS, BENCH_GETS, BENCH_LISTS tune it)")
end)

if started then control.stop() end
os.remove(LOG)
if not ok then
  io.stderr:write("bench: " .. tostring(err) .. "\n")
  os.exit(1)
end
