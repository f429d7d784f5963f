-- Timestamps: the emulator keeps every instant as integer microseconds since the
-- Unix epoch (exact in a double up to year 2255, so LuaJIT and Lua 5.4 agree) and
-- renders them as RFC 3339 UTC with 6 fractional digits, like the Go layout
-- 2006-01-02T15:04:05.000000Z that the list filters expect.
local M = {}

local floor = math.floor
local US = 1000000

-- Go's zero time, used for last_login_at of users who never logged in.
M.ZERO = "0001-01-01T00:00:00Z"

-- Days since 1970-01-01 of a proleptic Gregorian date (no dependency on the
-- local time zone, unlike os.time).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
M.days_from_civil = days_from_civil

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- Renders integer microseconds; nil renders the zero time. A value that is
-- not finite raises, on every Lua: Lua 5.4's string.format refuses it by
-- itself, LuaJIT's (the one nginx runs) would render garbage.
function M.format(us)
  if us == nil then return M.ZERO end
  if us ~= us or us == math.huge or us == -math.huge then
    error("timestamp.format: not a finite number of microseconds: " .. tostring(us), 2)
  end
  local secs = floor(us / US)
  local frac = us - secs * US
  local days = floor(secs / 86400)
  local sod = secs - days * 86400
  local y, m, d = civil_from_days(days)
  return string.format("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", y, m, d,
    floor(sod / 3600), floor(sod % 3600 / 60), sod % 60, frac)
end

local DAYS_IN = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- Parses exactly the Go layout 2006-01-02T15:04:05.000000Z; nil when invalid.
function M.parse(s)
  local y, mo, d, h, mi, se, f =
    s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)%.(%d%d%d%d%d%d)Z$")
  if not y then return nil end
  y, mo, d, h, mi, se, f = tonumber(y), tonumber(mo), tonumber(d), tonumber(h),
    tonumber(mi), tonumber(se), tonumber(f)
  if mo < 1 or mo > 12 or d < 1 or h > 23 or mi > 59 or se > 59 then return nil end
  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  local dim = DAYS_IN[mo] + ((mo == 2 and leap) and 1 or 0)
  if d > dim then return nil end
  local secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se
  return secs * US + f
end

-- Converts a clock reading in (fractional) seconds to integer microseconds.
function M.from_seconds(t)
  return floor(t * US + 0.5)
end

return M
