-- The Lua half of src/fuzz/fuzz_response.c: the client's verdict on one
-- response, and the rules that verdict must keep whatever the bytes were.
-- Any broken rule raises, and the harness aborts (a libFuzzer crash).
local users = require "passage.users"
local core = require "passage.core"
local engine = require "passage.engine"
local errors = require "passage.errors"
local retry = require "passage.retry"
local compare = require "support.json_compare"

local cjson = require("cjson").new()
if cjson.decode_invalid_numbers then
    cjson.decode_invalid_numbers(false)
end
cjson.decode_max_depth(1000)

local KEY = "sk_fuzz_never_printed"

-- A value for each argument name of passage.operations: an operation whose
-- argument is missing here stops the harness at load, naming it.
local ARG_SAMPLES = {
    app_id = "app", user_id = "u1", device_id = "d1", identifier = "a@example.com",
    create = { email = "a@example.com" }, update = { phone = "+14155552671" },
    params = { limit = 5 },
}

-- Every operation of passage.operations, in name order: { name, what a
-- success gives ("user", "list", "devices", "true", or "next" for a
-- continuation), arguments... }.
local FUZZED = {}
for name, op in pairs(require "passage.operations") do
    local entry = { name, op.next and "next" or op.result == "done" and "true" or op.result }
    for _, arg in ipairs(op.args) do
        entry[#entry + 1] = assert(ARG_SAMPLES[arg], "no sample for argument " .. arg .. " of " .. name)
    end
    FUZZED[#FUZZED + 1] = entry
end
table.sort(FUZZED, function(a, b) return a[1] < b[1] end)

-- The calls of every operation, prepared by a real client (nothing is sent:
-- each started request is cancelled before any I/O).
local client = users.new { api_key = KEY, base_url = "http://127.0.0.1:9/v1" }
local calls = {}
for i, op in ipairs(FUZZED) do
    local h = client:start(op[1], table.unpack(op, 3))
    calls[i] = h.call
    h:cancel()
end

-- The same documents decoded in the other null mode, at both depths.
local decoders = {}
for _, keep_null in ipairs { false, true } do
    decoders[keep_null] = {
        [false] = core.decoder { keep_null = keep_null },
        [true] = core.decoder { keep_null = keep_null, max_depth = 4 },
    }
end

local function verdict(value, err, next_call)
    return next_call and "next" or value ~= nil and "ok" or err.kind
end

local KINDS = { http = true, timeout = true, connect = true, tls = true, network = true,
    decode = true, too_large = true, cancelled = true, not_found = true }
local TRANSIENT_STATUS = { [429] = true, [502] = true, [503] = true, [504] = true }
local POLICY = { retry_base_delay_ms = 100, retry_max_delay_ms = 5000, retry_after_max_ms = 30000 }

local function check_error(err, response, transient, call, body)
    assert(errors.is_error(err), "err is not an error")
    assert(KINDS[err.kind], "unknown kind " .. tostring(err.kind))
    assert(err.status == nil or math.type(err.status) == "integer", "status")
    assert(err.retry_after == nil or err.retry_after >= 0, "retry_after")
    local text = tostring(err)
    assert(type(text) == "string", "tostring(err)")
    -- (unless the server itself sent the key back)
    if not body:find(KEY, 1, true) then
        assert(not text:find(KEY, 1, true), "key in message")
        for k, v in pairs(err) do
            assert(not tostring(v):find(KEY, 1, true), "key in err." .. tostring(k))
        end
    end
    assert(type(transient) == "boolean", "transient is not a boolean")
    if transient then
        if response.kind then
            assert(response.kind == "timeout" or response.kind == "connect"
                or response.kind == "network", "transient kind " .. response.kind)
        else
            assert(TRANSIENT_STATUS[response.status], "transient status " .. response.status)
        end
        if not call.idempotent then
            assert(response.sent == false, "a sent create judged transient")
        end
    end
end

local function check_value(shape, value)
    if shape == "user" then
        assert(type(value) == "table" and type(value.id) == "string", "user without id")
    elseif shape == "true" then
        assert(value == true, "expected true")
    elseif shape == "list" then
        assert(type(value) == "table" and type(value.users) == "table", "list without users")
        for i = 1, #value.users do
            assert(type(value.users[i].id) == "string", "listed user without id")
        end
    elseif shape == "devices" then
        assert(type(value) == "table", "devices")
    else
        error("a value where a next call was due")
    end
end

return function(response, op, body, keep_null, shallow)
    local i = op % #FUZZED + 1
    local call = calls[i]
    local value, err, transient, next_call = engine.outcome(call, response)
    if next_call then
        assert(value == nil and err == nil, "next call with a result")
        assert(FUZZED[i][2] == "next", "next call from " .. FUZZED[i][1])
        assert(next_call.method == "GET" and next_call.url:find("/users/", 1, true), "next url")
    elseif err then
        assert(value == nil, "value and err")
        check_error(err, response, transient, call, body)
    else
        check_value(FUZZED[i][2], value)
    end

    local wait = retry.parse_retry_after(response.retry_after)
    assert(wait == nil or wait >= 0, "negative Retry-After")
    local delay = retry.delay_ms(POLICY, 1, response.retry_after)
    assert(delay == nil or (delay >= 0 and delay <= POLICY.retry_after_max_ms), "delay")

    if response.body == nil then
        return
    end
    -- Nulls kept or dropped, the client reaches the same verdict.
    local other = decoders[not keep_null][shallow]:decode(body)
    assert(other ~= nil, "accepted in one null mode only")
    local copy = {}
    for k, v in pairs(response) do copy[k] = v end
    copy.body = other
    local v2, e2, _, n2 = engine.outcome(call, copy)
    local a, b = verdict(value, err, next_call), verdict(v2, e2, n2)
    assert(a == b, "keep_null changes the verdict: " .. a .. " vs " .. b)

    -- The decoder against lua-cjson where both accept the body (nulls kept,
    -- so the two mean the same thing by a null member).
    local ok, theirs = pcall(cjson.decode, body)
    if ok then
        local kept = keep_null and response.body or other
        local same, where = compare.diff(kept, theirs)
        assert(same, "differs from lua-cjson at " .. tostring(where))
    end
end
