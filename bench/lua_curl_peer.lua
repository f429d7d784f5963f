-- The peer of a get_user call: Debian's lua-curl (the Lua-cURL 0.3 binding,
-- for Lua 5.1 and LuaJIT) and lua-cjson, the function a script would write
-- without this library: the user's URL set on one reused easy handle, the
-- request headers passage.users sends (bench/calls.lua gives them, so both
-- sides make the same HTTP exchange), the body gathered by a write
-- callback, decoded, and its user's id checked.
--
--   luajit bench/lua_curl_peer.lua BASE_URL APP_ID USER_ID N HEADER...
--
-- Prints "cpu_us_per_request X", the CPU time (os.clock: user + system of
-- this process) per request of the N requests, after two to warm up.
local curl = require "curl"
local cjson = require "cjson"

local base_url, app_id, user_id, n = arg[1], arg[2], arg[3], tonumber(arg[4])
if not (base_url and app_id and user_id and n and arg[5]) then
  io.stderr:write("usage: lua_curl_peer.lua BASE_URL APP_ID USER_ID N HEADER...\n")
  os.exit(2)
end

local easy = curl.easy_init()
easy:setopt(curl.OPT_HTTPHEADER, { select(5, unpack(arg)) }) -- luacheck: globals unpack
easy:setopt(curl.OPT_NOSIGNAL, 1)
local pieces, count = {}, 0
easy:setopt(curl.OPT_WRITEFUNCTION, function(data)
  count = count + 1
  pieces[count] = data
  return #data
end)

local function get_user(app, id)
  count = 0
  easy:setopt(curl.OPT_URL, base_url .. "/apps/" .. app .. "/users/" .. id)
  local rc = easy:perform()
  if rc ~= 0 then
    error("lua-curl perform failed: " .. tostring(rc))
  end
  local body = table.concat(pieces, "", 1, count)
  local user = cjson.decode(body).user
  if type(user) ~= "table" or type(user.id) ~= "string" then
    error("no user in the answer: " .. body:sub(1, 200))
  end
  return user
end

get_user(app_id, user_id)
get_user(app_id, user_id)
collectgarbage("collect")
local t0 = os.clock()
for _ = 1, n do
  get_user(app_id, user_id)
end
print(string.format("cpu_us_per_request %.2f", (os.clock() - t0) / n * 1e6))
