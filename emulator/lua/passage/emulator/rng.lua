-- A small deterministic generator (Park-Miller "minimal standard", multiplier
-- 48271). All arithmetic stays below 2^47, so it gives the same sequence on
-- Lua 5.4 integers and on LuaJIT doubles; seeded data is therefore identical
-- whichever interpreter runs the emulator.
local M = {}
M.__index = M

local MOD = 2147483647

function M.new(seed)
  seed = math.floor(tonumber(seed) or 1) % (MOD - 1)
  return setmetatable({ s = seed + 1 }, M)
end

-- Integer in [1, n].
function M:int(n)
  local s = self.s * 48271 % MOD
  self.s = s
  return s % n + 1
end

-- Float in [0, 1).
function M:float()
  local s = self.s * 48271 % MOD
  self.s = s
  return (s - 1) / (MOD - 1)
end

function M:pick(list)
  return list[self:int(#list)]
end

local ALNUM = {}
do
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
  for i = 1, #chars do ALNUM[i] = chars:byte(i) end
end
local unpack = table.unpack or unpack -- luacheck: ignore 143

-- An opaque id like the real ones: 24 alphanumerics.
function M:id(len)
  len = len or 24
  local b = {}
  for i = 1, len do b[i] = ALNUM[self:int(62)] end
  return string.char(unpack(b))
end

return M
