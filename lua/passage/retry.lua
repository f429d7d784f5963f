-- When a failed attempt is tried again, and after how long.
--
-- Transient failures are retried: a refused or reset connection, a timeout
-- of one attempt, HTTP 429, 502, 503 and 504. Only calls that are safe to
-- repeat are retried on those; a call that is not (create_user) is retried
-- only when the request provably never left this machine, so a retry can
-- never create a user twice.
local retry = {}

local RETRYABLE_STATUS = { [429] = true, [502] = true, [503] = true, [504] = true }
local RETRYABLE_KIND = { timeout = true, connect = true, network = true }

-- `response` is a request's response() table, the same fields from either
-- transport (passage.core's libcurl one, passage.cosocket's).
-- One rule for every call: a fault worth another attempt is retried when
-- the call is safe to repeat, or when not one byte of the request was
-- written (response.sent == false), so the server cannot have acted on it.
function retry.is_transient(response, idempotent)
    if response.kind then
        return RETRYABLE_KIND[response.kind] == true and (idempotent or response.sent == false)
    end
    return idempotent and RETRYABLE_STATUS[response.status] == true
end

local MONTHS = {
    Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
    Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12,
}

-- Days since 1970-01-01 of a proleptic Gregorian date (no time zone
-- involved, unlike os.time, which reads its table as local time).
local function days_from_civil(y, m, d)
    if m <= 2 then
        y = y - 1
    end
    local era = math.floor(y / 400)
    local yoe = y - era * 400
    local mp = (m + 9) % 12
    local doy = math.floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

-- Seconds to wait from a Retry-After value: delta-seconds or an HTTP-date
-- ("Wed, 21 Oct 2015 07:28:00 GMT"). nil when it is neither.
function retry.parse_retry_after(value, now_epoch)
    if type(value) ~= "string" then
        return nil
    end
    local secs = value:match("^%s*(%d+)%s*$")
    if secs then
        return tonumber(secs)
    end
    local d, mon, y, hh, mm, ss =
        value:match("^%s*%a+,%s+(%d%d?)%s+(%a+)%s+(%d%d%d%d)%s+(%d%d):(%d%d):(%d%d)%s+GMT%s*$")
    if not d or not MONTHS[mon] then
        return nil
    end
    local at = days_from_civil(tonumber(y), MONTHS[mon], tonumber(d)) * 86400
        + tonumber(hh) * 3600 + tonumber(mm) * 60 + tonumber(ss)
    local wait = at - (now_epoch or os.time())
    return wait > 0 and wait or 0
end

-- Milliseconds to wait before attempt number `attempt + 1`, or nil when the
-- server asked for a longer wait than the policy allows.
--   policy.retry_base_delay_ms, retry_max_delay_ms, retry_after_max_ms
-- Backoff is exponential with "equal jitter": half the step is fixed, so
-- retries never bunch at zero, and half is random, so clients spread out.
function retry.delay_ms(policy, attempt, retry_after_value, random)
    local asked = retry.parse_retry_after(retry_after_value)
    if asked then
        -- Seconds are compared before they become milliseconds: a huge
        -- value (18 digits) would wrap around as a Lua 5.3+ integer.
        if asked > policy.retry_after_max_ms / 1000 then
            return nil
        end
        return asked * 1000
    end
    local step = policy.retry_base_delay_ms * 2 ^ (attempt - 1)
    if step > policy.retry_max_delay_ms then
        step = policy.retry_max_delay_ms
    end
    return step / 2 + (random or math.random)() * step / 2
end

return retry
