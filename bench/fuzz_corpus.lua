-- Seed corpus for src/fuzz/fuzz_response.c: real responses of the emulator
-- (a user, a list page, devices, every error form, the broken bodies of its
-- fault injection), written in the harness's input layout:
--   status byte, flags byte, operation byte, header lines, empty line, body.
--
--   lua5.4 bench/fuzz_corpus.lua <dir>     (starts the emulator if needed)
local emulator = require "support.emulator"

local dir = assert(arg[1], "usage: fuzz_corpus.lua <dir>")
local APP = "test_app"
local AUTH = { Authorization = "Bearer test_key" }

-- Indexes into the harness's table of common statuses.
local STATUS_BYTE = { [200] = 0, [201] = 1, [204] = 3, [302] = 5, [400] = 6, [401] = 7,
    [404] = 8, [409] = 9, [429] = 10, [500] = 11, [502] = 12, [503] = 13, [504] = 14 }
-- Operation numbers of the harness (src/fuzz/fuzz_response.lua, FUZZED).
local OP = { get = 0, create = 1, update = 2, delete = 5, list = 6, devices = 7, by_id = 10 }

local count = 0
local function write(name, op, res, flags)
    local status = res.status or 200
    local lines = { "HTTP/1.1 " .. status .. " X" }
    for k, v in pairs(res.headers) do
        lines[#lines + 1] = k .. ": " .. v
    end
    local head = string.char(STATUS_BYTE[status] or (128 + (status - 100) // 4),
        flags or 0, op + 0xC0)
    local f = assert(io.open(dir .. "/" .. name, "wb"))
    f:write(head, table.concat(lines, "\r\n"), "\r\n\r\n", res.body or "")
    f:close()
    count = count + 1
end

emulator.ensure()
local ok, err = pcall(function()
    emulator.reset()
    emulator.seed(APP, 40, 11)
    local base = "/v1/apps/" .. APP .. "/users"
    local list = emulator.raw("GET", base .. "?limit=5", { headers = AUTH })
    write("list", OP.list, list)
    write("list-keep-null", OP.list, list, 8)
    write("by-identifier", OP.by_id, emulator.raw("GET", base .. "?limit=1", { headers = AUTH }))
    local ids = {}
    for id in list.body:gmatch('"id":"(%w+)"') do ids[#ids + 1] = id end
    local user = emulator.raw("GET", base .. "/" .. ids[1], { headers = AUTH })
    write("user", OP.get, user)
    write("user-keep-null", OP.get, user, 8)
    write("user-shallow", OP.get, user, 16)
    write("devices", OP.devices, emulator.raw("GET", base .. "/" .. ids[1] .. "/devices",
        { headers = AUTH }))
    local created = emulator.raw("POST", base, { headers = { Authorization = AUTH.Authorization,
        ["Content-Type"] = "application/json" }, body = '{"email":"seed@example.com"}' })
    write("created", OP.create, created)
    write("deleted", OP.delete, emulator.raw("DELETE", base .. "/" .. ids[2], { headers = AUTH }))
    write("404", OP.get, emulator.raw("GET", base .. "/nobody", { headers = AUTH }))
    write("401", OP.get, emulator.raw("GET", base .. "/nobody", { headers = {} }))
    write("400", OP.list, emulator.raw("GET", base .. "?limit=9999", { headers = AUTH }))
    write("400-create", OP.create, emulator.raw("POST", base, { headers = AUTH, body = "[]" }))
    for _, f in ipairs {
        { "503", { status = 503, retry_after = "2" } },
        { "429-date", { status = 429, retry_after = "Wed, 21 Oct 2015 07:28:00 GMT" } },
        { "html-502", { status = 502, body = "html" } },
        { "not-json", { body = "not_json" } },
        { "invalid-utf8", { body = "invalid_utf8" } },
        { "wrong-types", { body = "wrong_types" } },
        { "empty", { body = "empty" } },
        { "truncated", { truncate = true } },
    } do
        emulator.faults { clear = true, next = { f[2] } }
        write(f[1], OP.get, emulator.raw("GET", base .. "/" .. ids[3], { headers = AUTH }))
    end
    emulator.faults { clear = true }
    -- deep nesting, kept short: the harness caps inputs at 64 KiB
    write("deep", OP.get, { status = 200, headers = { ["content-type"] = "application/json" },
        body = string.rep("[", 200) .. string.rep("]", 200) })
end)
emulator.stop_if_started()
assert(ok, err)
print(count .. " seed inputs in " .. dir)
