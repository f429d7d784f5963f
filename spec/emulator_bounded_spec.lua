-- The emulator is other projects' test fixture: no list request may hold its
-- one worker for long, whatever the filter or order_by. Each case runs against
-- 100,000 seeded users while /__emulator/stats is asked at the same time; the
-- stats answer (queued behind the list request in the single worker) and the
-- list answer must both come back well inside a loose bound.
local socket = require("socket")
local emu = require("support.emulator")

local APP, KEY = "bounded_app", "bounded_key"
local BOUND_S = 5

-- Sends the list request on a socket of its own, asks for the statistics
-- meanwhile, then reads the list answer. Returns the list status and the
-- seconds until stats and list answered.
local function list_while_stats(query)
  local t0 = socket.gettime()
  local c = assert(socket.connect("127.0.0.1", emu.port()))
  c:settimeout(BOUND_S * 4)
  assert(c:send("GET /v1/apps/" .. APP .. "/users?" .. query .. " HTTP/1.1\r\n"
    .. "Host: 127.0.0.1\r\nAuthorization: Bearer " .. KEY .. "\r\nConnection: close\r\n\r\n"))
  socket.sleep(0.05) -- the list request reaches the worker first
  local stats = socket.tcp()
  stats:settimeout(BOUND_S * 4)
  assert(stats:connect("127.0.0.1", emu.port()))
  assert(stats:send("GET /__emulator/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
  local stats_line = stats:receive("*l")
  local stats_s = socket.gettime() - t0
  stats:close()
  local line = c:receive("*l")
  c:receive("*a")
  c:close()
  assert.is_truthy(stats_line and stats_line:find("^HTTP/1.1 200"), "stats did not answer")
  return line and tonumber(line:match("^HTTP/1%.1 (%d+)")), stats_s, socket.gettime() - t0
end

local function pairs_of(unit, n, sep)
  local t = {}
  for i = 1, n do t[i] = unit end
  return table.concat(t, sep or "")
end

describe("emulator: every list request ends in bounded time at 100,000 users", function()
  setup(function()
    emu.add_app(APP, KEY)
    local seeded = emu.seed(APP, 100000, 7)
    assert.are.equal(100000, seeded.total_users)
  end)
  teardown(function() emu.reset() end) -- gives the worker's memory back

  local cases = {
    -- Each "%_" pair was one more level of backtracking in a Lua pattern.
    { "eight %_ pairs before a byte no email has",
      "identifier=like:" .. pairs_of("%25_", 8) .. "%23" },
    { "a thousand %_ pairs", "identifier=like:" .. pairs_of("%25_", 1000) .. "%23" },
    { "five thousand % in a row", "identifier=like:" .. pairs_of("%25", 5000) .. "m" },
    { "not_like with %_ pairs", "identifier=not_like:" .. pairs_of("%25_", 8) .. "%23" },
    { "pieces that each fit, then fail at the end",
      "identifier=like:" .. pairs_of("%25e", 12) .. "%25%23" },
    { "id and status like", "id=like:" .. pairs_of("%25a", 10) .. "%25&status=like:%25_%25_%25x" },
    { "700 repeated order_by terms",
      "order_by=" .. pairs_of("login_count:DESC", 700, ",") },
    { "every field, repeated", "order_by=" .. pairs_of(
      "status:ASC,email:DESC,phone:ASC,login_count:DESC,last_login_at:ASC,updated_at:DESC", 40, ",") },
  }
  for _, case in ipairs(cases) do
    it(case[1], function()
      local status, stats_s, list_s = list_while_stats(case[2] .. "&limit=5")
      assert.are.equal(200, status)
      assert.is_true(stats_s < BOUND_S, string.format("stats took %.1f s", stats_s))
      assert.is_true(list_s < BOUND_S, string.format("the list took %.1f s", list_s))
    end)
  end
end)

describe("emulator: LIKE keeps its meaning", function()
  local like = require("passage.emulator.listing").like_matcher
  local cases = {
    { "%", "", true }, { "", "", true }, { "", "a", false }, { "_", "", false },
    { "a%", "abc", true }, { "%c", "abc", true }, { "%b%", "abc", true }, { "a_c", "abc", true },
    { "a_c", "abbc", false }, { "a%c", "ac", true }, { "a%%c", "abc", true },
    { "%a%a%", "aa", true }, { "%a%a%", "a", false }, { "ab%ab", "ab", false },
    { "ab%ab", "abab", true }, { "%x_z", "xxyz", true }, { "a.c", "abc", false },
    { "[a]%", "[a]b", true }, { "100%", "100%", true }, { "a\0_", "a\0b", true },
    { "%%%", "", true }, { "a%%%%b", "ab", true }, { "a%%%%b", "axxb", true }, { "%%a", "ba", true },
  }
  for _, c in ipairs(cases) do
    it(string.format("%q against %q is %s", c[1], c[2], tostring(c[3])), function()
      assert.are.equal(c[3], like(c[1])(c[2]))
    end)
  end
end)
