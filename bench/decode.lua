-- Decoder benchmark: passage.core's decoder against lua-cjson, in one
-- process, on a 500-user page (GET /apps/{app_id}/users) and on one full user.
--
--   make build && LUA_PATH='bench/?.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 bench/decode.lua
--   ... lua5.4 bench/decode.lua PAGE_FILE USER_FILE
--
-- Without arguments the documents are synthetic (bench/fixtures.lua); with
-- them, they are the bytes of two real responses, as `make bench` saves them
-- from the emulator (whose encoder escapes "/" as "\/", as the service does).
--
-- (LUA_VERSION=5.1|5.3|jit make build and the matching build/ directory and
-- interpreter for the other flavours; BENCH_ROUNDS and BENCH_SECONDS tune it.)
--
-- CPU time comes from os.clock. Each case runs in rounds that alternate
-- between the two decoders; the best round of each is reported, which is the
-- figure least disturbed by other load on the machine.
local core = require("passage.core")
local cjson = require("cjson").new()
local fixtures = require("fixtures")

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 7
local ROUND_SECONDS = tonumber(os.getenv("BENCH_SECONDS")) or 0.3

local function per_decode(fn, doc, iterations)
  collectgarbage("collect")
  local t0 = os.clock()
  for _ = 1, iterations do
    fn(doc)
  end
  return (os.clock() - t0) / iterations
end

-- Enough iterations for one round to last about ROUND_SECONDS.
local function calibrate(fn, doc)
  local n = 1
  while true do
    local t0 = os.clock()
    for _ = 1, n do
      fn(doc)
    end
    local dt = os.clock() - t0
    if dt >= 0.05 then
      return math.max(1, math.floor(n * ROUND_SECONDS / dt))
    end
    n = n * 2
  end
end

local decoder = core.decoder()
local ours = function(doc)
  return decoder:decode(doc)
end
local theirs = cjson.decode

local function run(name, doc)
  assert(ours(doc) and theirs(doc), "fixture does not decode")
  local n_ours, n_theirs = calibrate(ours, doc), calibrate(theirs, doc)
  local best_ours, best_theirs = math.huge, math.huge
  for _ = 1, ROUNDS do
    best_ours = math.min(best_ours, per_decode(ours, doc, n_ours))
    best_theirs = math.min(best_theirs, per_decode(theirs, doc, n_theirs))
  end
  print(string.format("%-32s %7.1f KB   passage %9.2f us   cjson %9.2f us   cjson/passage %.2fx", name,
    #doc / 1024, best_ours * 1e6, best_theirs * 1e6, best_theirs / best_ours))
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local page, user, source
if arg[1] then
  page, user, source = slurp(arg[1]), slurp(assert(arg[2], "usage: decode.lua [PAGE USER]")),
    "emulator"
else
  page, user, source = fixtures.page(500), fixtures.user(), "synthetic"
end
local n_users = #assert(cjson.decode(page).users, "the page has no users")

local lua_name = rawget(_G, "jit") and rawget(_G, "jit").version or _VERSION
print(string.format("%s, lua-cjson %s, %d rounds of ~%.1fs each, best round per decode", lua_name,
  cjson._VERSION or "?", ROUNDS, ROUND_SECONDS))
run(string.format("%s page of %d users", source, n_users), page)
run(source .. " user (UserResponse)", user)
local flavour = rawget(_G, "jit") and "jit" or _VERSION:match("%d+%.%d+")
if source == "synthetic" then -- with files, bench/run.lua prints how to reproduce
  print(string.format("reproduce: LUA_VERSION=%s make build && LUA_PATH='bench/?.lua;;' "
    .. "LUA_CPATH='build/%s/?.so;;' %s bench/decode.lua", flavour, flavour,
    flavour == "jit" and "luajit" or "lua" .. flavour))
end
