local filters = require "passage.filters"
local url = require "passage.url"

local function query(params)
    return url.query(filters.to_query(params))
end

describe("list query", function()
    it("puts paging first, then filters, in a fixed order", function()
        assert.equal("page=2&limit=50&created_before=1700000000&order_by=created_at:DESC,id:ASC"
            .. "&status=active&login_count=gt:3",
            query { login_count = { gt = 3 }, status = "active", page = 2, limit = 50,
                created_before = 1700000000, order_by = { { "created_at", "DESC" }, "id:ASC" } })
    end)

    it("writes every operator the spec allows", function()
        for _, op in ipairs { "ne", "gt", "lt", "like", "not_like" } do
            assert.equal("identifier=" .. op .. ":x", query { identifier = { [op] = "x" } })
        end
        assert.equal("id=ne:abc", query { id = { ne = "abc" } })
    end)

    it("encodes values so they cannot add parameters", function()
        assert.equal("identifier=like:%25@x.com%26admin%3Dtrue",
            query { identifier = { like = "%@x.com&admin=true" } })
        assert.equal("id=a%2Fb%3Fc%23d%20e%0D%0A", query { id = "a/b?c#d e\r\n" })
    end)

    it("formats Unix seconds in the API's timestamp layout", function()
        assert.equal("created_at=gt:2023-11-14T22:13:20.000000Z", query { created_at = { gt = 1700000000 } })
        assert.equal("2023-11-14T22:13:20.250000Z", filters.format_time(1700000000.25))
        assert.equal("updated_at=2006-01-02T15:04:05.000000Z",
            query { updated_at = "2006-01-02T15:04:05.000000Z" })
    end)

    local function rejects(params, pattern)
        local ok, err = pcall(filters.to_query, params)
        assert.is_false(ok)
        assert.matches(pattern, tostring(err))
    end

    it("rejects what the API would refuse, before any request", function()
        rejects({ limit = 501 }, "limit")
        rejects({ limit = 0 }, "limit")
        rejects({ page = 0 }, "page")
        rejects({ page = 1.5 }, "page")
        rejects({ nickname = "x" }, "unknown parameter nickname")
        rejects({ login_count = { like = "1%" } }, "operator like not allowed")
        rejects({ created_at = { not_like = 1 } }, "operator not_like not allowed")
        rejects({ status = "banned" }, "not one of active, inactive, pending")
        rejects({ status = { gt = 3, lt = 4 } }, "exactly one operator")
        rejects({ order_by = "identifier:ASC" }, "cannot order by identifier")
        rejects({ order_by = "email:UP" }, "direction")
        rejects({ order_by = "nickname:ASC" }, "unknown field")
        rejects({ created_at = "yesterday" }, "2006%-01%-02")
        rejects({ login_count = -1 }, "whole number")
        rejects({ identifier = "ne:bob@example.com" }, "reads as an operator")
        rejects("status=active", "expected a table")
    end)

    it("accepts like patterns for status", function()
        assert.equal("status=like:act%25", query { status = { like = "act%" } })
    end)
end)

describe("path segments", function()
    local path = require("passage.core").path
    local function segment(id)
        return (path("", { "", "" }, 1024, id))
    end

    it("encode every byte that could change the path", function()
        assert.equal("%2E%2E%2Fx", segment("../x"))
        assert.equal("a%2Fb%3Fc", segment("a/b?c"))
        assert.equal("%2E%2E", segment(".."))
        assert.equal("abc-_~XYZ019", segment("abc-_~XYZ019"))
        assert.equal("%0D%0AHost%3A%20evil", segment("\r\nHost: evil"))
        assert.equal("a%20", segment("a "))
    end)

    it("keep A-Z a-z 0-9 - _ ~ and encode each of the other 256 bytes", function()
        for byte = 0, 255 do
            local c = string.char(byte)
            local want = c:find("^[%w%-_~]$") and c or string.format("%%%02X", byte)
            assert.equal("x" .. want, segment("x" .. c), "byte " .. byte)
        end
    end)

    -- core.path says which id is unusable, the client's check why: both
    -- must call the same ids blank, or a bad id would reach the request.
    it("call an id blank as the client's check does", function()
        local users = require("passage.users")
        local client = users.new { api_key = "k", base_url = "http://127.0.0.1:1/v1" }
        for _, id in ipairs { " ", " \t", "\v", "\f", "\r\n", "\0", "a ", "\194\160", "" } do
            local blank = segment(id) == nil
            local ok, err = pcall(client.check, client, "get_user", "app", id)
            assert.equal(blank, not ok, string.format("%q", id))
            if blank then
                assert.matches("user_id: must not be empty", err)
            end
        end
        client:close()
    end)

    it("make a call's URL, each id one segment, or name the first bad id", function()
        local pieces = { "/apps/", "/users/", "/devices" }
        assert.equal("http://h/v1/apps/a%2Fb/users/%2E%2E/devices",
            path("http://h/v1", pieces, 1024, "a/b", ".."))
        assert.equal("b/x", path("b", { "/x" }, 1024))
        assert.same({ nil, 2 }, { path("b", pieces, 1024, "a", " ") })
        assert.same({ nil, 1 }, { path("b", pieces, 1024, 42, "a") })
        assert.same({ nil, 2 }, { path("b", pieces, 1024, "a", nil) })
        assert.same({ nil, 2 }, { path("b", pieces, 3, "abc", "abcd") })
        assert.same({ nil, 2 }, { path("b", pieces, 1024, "a") }) -- an id not given
        -- Longer than a URL usually is: all the same.
        local long = string.rep("/", 1024)
        assert.equal("b/apps/" .. string.rep("%2F", 1024) .. "/users/" .. string.rep("%2F", 1024)
            .. "/devices", path("b", pieces, 1024, long, long))
    end)
end)
