-- passage-users' output is safe to open and to look at: CSV cells that a
-- spreadsheet would run are neutralised (and read back as they were), CSV
-- follows RFC 4180 and reads a spreadsheet's BOM and header case, no
-- control or bidi character from a server or from user data reaches a
-- terminal, and counts no server should send are reported, not crashed on.
local emulator = require "support.emulator"
local cli = require "support.cli"
local files = require "support.files"
local cjson = require("cjson").new()

local KEY = "sk_cli_safe_Gv72Ns"

local function env(app, base_url)
    return { PASSAGE_API_KEY = KEY, PASSAGE_APP_ID = app,
        PASSAGE_BASE_URL = base_url or emulator.url() }
end

-- Bytes that act on a terminal: ESC, BEL, C1 CSI and OSC as UTF-8, RLO.
local ACTIVE = { "\27", "\7", "\194\155", "\194\157", "\226\128\174" }

local function assert_inert(text, what)
    for _, bytes in ipairs(ACTIVE) do
        assert.is_nil(text:find(bytes, 1, true), what .. " holds an active character:\n" .. text)
    end
end

-- A server that answers every request with one status and body: for
-- answers the emulator never gives. Returns its base URL and a stop.
local SERVER = [[
local socket = require "socket"
local status, body, port_file = arg[1], arg[2], arg[3]
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local f = assert(io.open(port_file, "w")); f:write(port); f:close()
while true do
    local c = server:accept()
    c:settimeout(2)
    local length = 0
    repeat
        local line = c:receive("*l")
        local n = line and line:lower():match("^content%-length:%s*(%d+)")
        length = n and tonumber(n) or length
    until not line or line == ""
    if length > 0 then c:receive(length) end
    c:send("HTTP/1.1 " .. status .. " X\r\nContent-Type: application/json\r\nContent-Length: "
        .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
    c:close()
end
]]

local function fixed_server(dir, status, body)
    local script = dir .. "/server.lua"
    local f = assert(io.open(script, "wb"))
    f:write(SERVER)
    f:close()
    local port_file = dir .. "/port"
    os.remove(port_file)
    local p = assert(io.popen(string.format("lua5.4 %s %d %s %s >%s 2>&1 & echo $!",
        script, status, cli.quote(body), port_file, dir .. "/server.log")))
    local pid = p:read("*n")
    p:close()
    local port
    for _ = 1, 100 do
        port = files.read(port_file)
        if port and port ~= "" then
            break
        end
        os.execute("sleep 0.05")
    end
    return "http://127.0.0.1:" .. port .. "/v1", function()
        os.execute("kill " .. pid)
    end
end

describe("passage-users output", function()
    local dir, client

    setup(function()
        emulator.reset()
        dir = cli.temp_dir()
        emulator.add_app("cli_safe", KEY)
        client = emulator.client({ api_key = KEY })
        for _, user in ipairs {
            { email = "=1+1@x.test", user_metadata = { note = "=HYPERLINK(\"http://x\")" } },
            { email = "-2+3@x.test" },
            { email = "+cmd@x.test" },
            { email = "'=quoted@x.test" },
            { email = "plain@x.test", phone = "+14155550100" },
            { email = "ctl@x.test", user_metadata = { title = "\27]0;pwned\7\27[2J",
                c1 = "a\194\155b\194\157c", bidi = "txt.\226\128\174exe" } },
        } do
            assert(client:create_user("cli_safe", user))
        end
    end)

    teardown(function()
        client:close()
        cli.remove_dir(dir)
    end)

    it("neutralises formula cells in CSV, with CRLF line ends, and reads them back", function()
        local out, err, code = cli.run({ "export", "--format", "csv" }, { env = env("cli_safe") })
        assert.equal(0, code, err)
        assert.is_nil(out:gsub("\r\n", ""):find("[\r\n]"), "a line end that is not CRLF")
        assert.matches(",'=1%+1@x%.test,", out)
        assert.matches(",'%-2%+3@x%.test,", out)
        assert.matches(",'%+cmd@x%.test,", out)
        assert.matches(",''=quoted@x%.test,", out)
        assert.matches(",%+14155550100,", out) -- an E.164 phone is data
        assert.is_nil(out:find(",=", 1, true))
        -- --csv-raw writes the values as they are.
        local raw = cli.run({ "export", "--format", "csv", "--csv-raw" }, { env = env("cli_safe") })
        assert.matches(",=1%+1@x%.test,", raw)
        -- Read back into another app: the values as they were.
        local path = dir .. "/safe.csv"
        local f = assert(io.open(path, "wb"))
        f:write(out)
        f:close()
        emulator.add_app("cli_safe_back", KEY)
        local _, back_err, back_code = cli.run({ "import", "--restore", path },
            { env = env("cli_safe_back") })
        assert.equal(0, back_code, back_err)
        for _, email in ipairs { "=1+1@x.test", "-2+3@x.test", "+cmd@x.test", "'=quoted@x.test" } do
            assert(client:get_user_by_identifier("cli_safe_back", email), email)
        end
    end)

    it("reads a CSV with a BOM and any header case", function()
        emulator.add_app("cli_bom", KEY)
        local path = dir .. "/bom.csv"
        local f = assert(io.open(path, "wb"))
        f:write("\239\187\191Email, PHONE ,User_Metadata\r\n",
            "bom1@x.test,,\r\n", "bom2@x.test,+14155550111,\"{\"\"plan\"\":\"\"pro\"\"}\"\r\n")
        f:close()
        local out, err, code = cli.run({ "import", path }, { env = env("cli_bom") })
        assert.equal(0, code, err .. out)
        assert.equal(2, #cli.lines(out))
        local user = assert(client:get_user_by_identifier("cli_bom", "bom2@x.test"))
        assert.equal("+14155550111", user.phone)
        assert.equal("pro", user.user_metadata.plan)
    end)

    it("shows no control or bidi character on a terminal: table, JSON, messages", function()
        local out, err, code = cli.run({ "list", "--format", "table" }, { env = env("cli_safe") })
        assert.equal(0, code, err)
        assert_inert(out, "the table")
        local id = assert(client:get_user_by_identifier("cli_safe", "ctl@x.test")).id
        out, err, code = cli.run({ "get", id }, { env = env("cli_safe") })
        assert.equal(0, code, err)
        assert_inert(out, "get's JSON")
        assert.same({ title = "\27]0;pwned\7\27[2J", c1 = "a\194\155b\194\157c",
            bidi = "txt.\226\128\174exe" }, cjson.decode(out).user_metadata)
        -- A server's error text with escapes in it.
        emulator.faults { next = { { status = 400, count = 1,
            error = "bad \27]0;title\7\27[2J \194\155 31m \226\128\174 done" } } }
        out, err, code = cli.run({ "get", id }, { env = env("cli_safe") })
        emulator.faults { clear = true }
        assert.equal(1, code)
        assert.equal("", out)
        assert_inert(err, "stderr")
        assert.matches("\\x1b]0;title\\x07", err, 1, true)
        assert.matches("\\u202e", err, 1, true)
    end)

    it("reports counts that are not whole numbers instead of crashing", function()
        local body = '{"users":[],"total_users":1e300,"page":1,"limit":20,"created_before":1}'
        local url, stop = fixed_server(dir, 200, body)
        finally(stop)
        local out, err, code = cli.run({ "list", "--format", "table" }, { env = env("x", url) })
        assert.equal(1, code, err)
        assert.matches("^ID ", out)
        assert.matches("passage%-users: the server sent counts that are not whole numbers "
            .. "%(total_users 1e%+300", err)
        out, err, code = cli.run({ "deactivate", "--where", "status=active", "--yes" },
            { env = env("x", url) })
        assert.equal(1, code, err)
        assert.equal("", out)
        assert.matches("not a whole number: 1e%+300", err)
        assert.is_nil(err:find("traceback", 1, true))
    end)
end)
