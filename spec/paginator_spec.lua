-- passage.paginator against the emulator: every user exactly once, for each
-- filter, order and walk option, while users come and go.
local users = require "passage.users"
local paginator = require "passage.paginator"
local filters = require "passage.filters"
local emulator = require "support.emulator"
local socket = require "socket"

local APP = "test_app"
local SEEDED = 4000

local function new_client(opts)
    return emulator.client(opts, { timeout_ms = 10000, retry_base_delay_ms = 10, retry_max_delay_ms = 50 })
end

-- Lua 5.4's generic for closes the walk when the loop is left early (a
-- to-be-closed variable); Lua 5.1 and LuaJIT have none.
local LOOPS_CLOSE_WALKS = load("local x <close> = nil") ~= nil

-- After a walk was left early (break, an error): on 5.4 the loop closed it,
-- so none of its pages is in flight; on 5.1 and LuaJIT its pages finish
-- unread, and none of them comes out of the client's poll.
local function assert_walk_left(client)
    if LOOPS_CLOSE_WALKS then
        assert.equal(0, client:pending())
        return
    end
    local deadline = socket.gettime() + 10
    while client:pending() > 0 and socket.gettime() < deadline do
        assert.same({}, client:poll(50))
    end
    assert.equal(0, client:pending())
end

local function copy(t, extra)
    local c = {}
    for k, v in pairs(t or {}) do
        c[k] = v
    end
    for k, v in pairs(extra or {}) do
        c[k] = v
    end
    return c
end

-- Every user of the app, page by page with plain list calls (not the
-- paginator), in the default order, with the window pinned by hand.
local function list_all(client, app_id)
    local all, page, pinned = {}, 1, nil
    while true do
        local res = assert(client:list_paginated_users(app_id,
            { page = page, limit = 500, created_before = pinned }))
        pinned = res.created_before
        for _, u in ipairs(res.users) do
            all[#all + 1] = u
        end
        if #res.users < 500 then
            return all
        end
        page = page + 1
    end
end

local function ids_of(list)
    local out = {}
    for i, u in ipairs(list) do
        out[i] = u.id
    end
    return out
end

local function select_users(list, keep)
    local out = {}
    for _, u in ipairs(list) do
        if keep(u) then
            out[#out + 1] = u
        end
    end
    return out
end

-- Asserts that `got` (array of ids) holds each id of `want` exactly once
-- and nothing else.
local function assert_each_once(want, got)
    local count = {}
    for _, id in ipairs(got) do
        count[id] = (count[id] or 0) + 1
    end
    for _, id in ipairs(want) do
        assert(count[id] == 1, string.format("user %s seen %d times", id, count[id] or 0))
        count[id] = nil
    end
    local extra = next(count)
    assert(extra == nil, "unexpected user " .. tostring(extra))
    assert.equal(#want, #got)
end

-- SQL LIKE as an anchored Lua pattern (% any run, _ one character).
local function like(value, sql)
    local out = { "^" }
    for c in sql:gmatch(".") do
        if c == "%" then
            out[#out + 1] = ".*"
        elseif c == "_" then
            out[#out + 1] = "."
        elseif c:find("%w") then
            out[#out + 1] = c
        else
            out[#out + 1] = "%" .. c
        end
    end
    out[#out + 1] = "$"
    return value:find(table.concat(out)) ~= nil
end

-- The expectation for one filter on one field value. Timestamps compare
-- as text: the API's layout is fixed-width, so text order is time order.
local function holds(value, f)
    if type(f) ~= "table" then
        return value == f
    end
    local op, v = next(f)
    if type(v) == "number" and type(value) == "string" then
        v = filters.format_time(v)
    end
    if op == "ne" then
        return value ~= v
    elseif op == "gt" then
        return value > v
    elseif op == "lt" then
        return value < v
    elseif op == "like" then
        return like(value, v)
    elseif op == "not_like" then
        return not like(value, v)
    end
    error("unknown operator " .. tostring(op))
end

-- identifier: email OR phone (non-empty) matches; ne/not_like need both to hold.
local function identifier_holds(u, f)
    local op = type(f) == "table" and next(f) or nil
    local g = f
    if op == nil then
        g = f:lower()
    elseif op == "like" or op == "not_like" then
        g = { [op] = f[op]:lower() }
    end
    if op == "ne" or op == "not_like" then
        return holds(u.email, g) and holds(u.phone, g)
    end
    return (u.email ~= "" and holds(u.email, g)) or (u.phone ~= "" and holds(u.phone, g))
end

local function expected_for(all, params)
    return select_users(all, function(u)
        for field, f in pairs(params) do
            if field ~= "limit" and field ~= "order_by" then
                if field == "identifier" then
                    if not identifier_holds(u, f) then
                        return false
                    end
                elseif not holds(u[field], f) then
                    return false
                end
            end
        end
        return true
    end)
end

local function sorted(all, keys)
    local list = copy(all)
    local has_id = false
    for _, k in ipairs(keys) do
        has_id = has_id or k[1] == "id"
    end
    if not has_id then
        keys = copy(keys)
        keys[#keys + 1] = { "id", "ASC" }
    end
    table.sort(list, function(a, b)
        for _, k in ipairs(keys) do
            local x, y = a[k[1]], b[k[1]]
            if x ~= y then
                if k[2] == "DESC" then
                    return x > y
                end
                return x < y
            end
        end
        return false
    end)
    return list
end

local function walk_ids(client, params, opts)
    local got = {}
    for u in paginator.users(client, APP, params, opts) do
        got[#got + 1] = u.id
    end
    return got
end

local function list_requests()
    return emulator.count(emulator.stats(), "GET /apps/{app_id}/users", 200)
end

-- Sleeps until the wall clock has passed the whole second `t`.
local function sleep_past(t)
    local left = t - socket.gettime()
    if left > 0 then
        socket.sleep(left + 0.02)
    end
end

describe("passage.paginator", function()
    describe("on a fixed app", function()
        local client, all, sample
        setup(function()
            emulator.reset()
            emulator.seed(APP, SEEDED, 11)
            client = new_client()
            -- Users with only one identifier, for the identifier operators.
            assert(client:create_user(APP, { email = "only.mail@example.com" }))
            assert(client:create_user(APP, { phone = "+14155550100" }))
            all = list_all(client, APP)
            sample = all[1234]
        end)
        teardown(function()
            client:close()
        end)

        it("sees every user once, in the default order", function()
            assert.equal(SEEDED + 2, #all)
            local got = assert(paginator.collect(client, APP))
            assert.same(ids_of(all), ids_of(got))
            assert.equal(users.array_mt, getmetatable(got))
            assert.same(ids_of(all), walk_ids(client, { limit = 137 }))
        end)

        -- Each case: params; the expectation filters `all` with the same
        -- values in Lua.
        local cases = {
            { status = "active" },
            { status = { ne = "active" } },
            { status = { like = "%ive" } },
            { status = { not_like = "act%" } },
            { status = { gt = "inactive" } },
            { status = { lt = "inactive" } },
            { login_count = 0 },
            { login_count = { ne = 0 } },
            { login_count = { gt = 100 } },
            { login_count = { lt = 5 } },
            { identifier = "sample-email" },
            { identifier = "sample-email-upper" },
            { identifier = "sample-phone" },
            { identifier = { like = "%@example.com" } },
            { identifier = { like = "%@EXAMPLE.com" } },
            { identifier = { like = "+1415%" } },
            { identifier = { like = "%.1__@%" } },
            { identifier = { not_like = "%@example.com" } },
            { identifier = { not_like = "+1%" } },
            { identifier = { ne = "sample-email" } },
            { identifier = { ne = "only.mail@example.com" } },
            { identifier = { gt = "m" } },
            { identifier = { lt = "c" } },
            { id = "sample-id" },
            { id = { ne = "sample-id" } },
            { id = { like = "A%" } },
            { id = { like = "_a%" } },
            { id = { not_like = "%a%" } },
            { id = { gt = "sample-id" } },
            { id = { lt = "sample-id" } },
            { created_at = "sample-created" },
            { created_at = { ne = "sample-created" } },
            { created_at = { gt = 1700000000 } },
            { created_at = { lt = 1680000000 } },
            { updated_at = { gt = 1720000000 } },
            { updated_at = { lt = "2024-06-01T00:00:00.000000Z" } },
            { last_login_at = { gt = 1730000000 } },
            { last_login_at = { lt = 1700000000 } },
            { last_login_at = { ne = "sample-login" } },
            { status = "active", login_count = { gt = 50 }, identifier = { like = "%example.com" } },
        }
        local function resolve(v)
            if type(v) == "table" then
                local op, x = next(v)
                return { [op] = resolve(x) }
            end
            if v == "sample-email" then return sample.email end
            if v == "sample-email-upper" then return sample.email:upper() end
            if v == "sample-phone" then return sample.phone end
            if v == "sample-id" then return sample.id end
            if v == "sample-created" then return sample.created_at end
            if v == "sample-login" then return sample.last_login_at end
            return v
        end
        for _, case in ipairs(cases) do
            local names = {}
            for field, v in pairs(case) do
                local op = type(v) == "table" and next(v) or "="
                names[#names + 1] = field .. " " .. op
            end
            table.sort(names)
            it("sees every matching user once with " .. table.concat(names, ", "), function()
                local params = { limit = 500 }
                for field, v in pairs(case) do
                    params[field] = resolve(v)
                end
                local want = expected_for(all, params)
                assert.is_true(#want > 0, "the case selects nobody")
                if not (params.id == sample.id or params.created_at == sample.created_at
                        or params.identifier == sample.email or params.identifier == sample.phone
                        or params.identifier == sample.email:upper()) then
                    assert.is_true(#want < #all, "the case selects everybody")
                end
                local before = list_requests()
                local got = assert(paginator.collect(client, APP, params))
                assert.same(ids_of(want), ids_of(got))
                -- One request per page, none past the last.
                assert.equal(math.max(1, math.ceil(#want / 500)), list_requests() - before)
            end)
        end

        local orders = {
            { "created_at:DESC", { { "created_at", "DESC" } } },
            { { { "login_count", "DESC" }, { "id", "ASC" } },
                { { "login_count", "DESC" }, { "id", "ASC" } } },
            { "status:ASC,login_count:DESC", { { "status", "ASC" }, { "login_count", "DESC" } } },
            { { "email" }, { { "email", "ASC" } } },
            { "last_login_at:DESC,id:DESC", { { "last_login_at", "DESC" }, { "id", "DESC" } } },
            { "updated_at:asc", { { "updated_at", "ASC" } } },
            { { "phone:DESC" }, { { "phone", "DESC" } } },
        }
        for _, o in ipairs(orders) do
            local name = type(o[1]) == "string" and o[1] or filters.order_by_text(o[1])
            it("keeps order_by " .. name .. " across page boundaries", function()
                local want = ids_of(sorted(all, o[2]))
                assert.same(want, walk_ids(client, { limit = 137, order_by = o[1] }))
            end)
        end

        it("keeps a descending order with a filter", function()
            local params = { status = { ne = "pending" }, order_by = "login_count:DESC", limit = 61 }
            local want = ids_of(sorted(expected_for(all, params), { { "login_count", "DESC" } }))
            assert.same(want, walk_ids(client, params))
        end)

        it("yields pages whose users are the next slice", function()
            local n, total, pinned = 0, 0, nil
            for page in paginator.pages(client, APP, { limit = 300 }) do
                n = n + 1
                assert.equal(n, page.page)
                assert.equal(SEEDED + 2, page.total_users)
                pinned = pinned or page.created_before
                assert.equal(pinned, page.created_before)
                for i, u in ipairs(page.users) do
                    assert.equal(all[total + i].id, u.id)
                end
                total = total + #page.users
            end
            assert.equal(math.ceil((SEEDED + 2) / 300), n)
            assert.equal(SEEDED + 2, total)
        end)

        for _, k in ipairs { 4, 8 } do
            it("gives the sequential sequence with in_flight = " .. k, function()
                for _, params in ipairs {
                    { limit = 97 },
                    { limit = 97, status = "active", order_by = "login_count:DESC" },
                    { limit = 500, identifier = { like = "%example.org" } },
                } do
                    local one = walk_ids(client, params)
                    local before = list_requests()
                    local many = walk_ids(client, params, { in_flight = k })
                    assert.same(one, many)
                    assert.equal(math.max(1, math.ceil(#one / params.limit)), list_requests() - before)
                    assert.equal(0, client:pending())
                    local got = assert(paginator.collect(client, APP, params, { in_flight = k }))
                    assert.same(one, ids_of(got))
                end
            end)
        end

        it("really keeps several pages in flight", function()
            local function timed(k)
                local t = socket.gettime()
                local got = walk_ids(client, { limit = 500 }, { in_flight = k })
                assert.equal(#all, #got)
                return socket.gettime() - t
            end
            emulator.faults { latency_ms = 150 }
            local ok, err = pcall(function()
                local one = timed(1)  -- 9 pages one after the other: ~1.35 s
                local many = timed(8) -- page 1, then 8 at once: ~0.3 s
                assert.is_true(many < one * 0.5,
                    string.format("in_flight 8: %.2f s, sequential: %.2f s", many, one))
            end)
            emulator.faults { clear = true }
            assert(ok, err)
        end)

        it("leaves no request running after a break out of a parallel walk", function()
            local n = 0
            for _ in paginator.users(client, APP, { limit = 50 }, { in_flight = 8 }) do
                n = n + 1
                if n == 120 then
                    break
                end
            end
            assert.equal(120, n)
            assert_walk_left(client)
            -- The client still works.
            assert.equal(#all, #assert(paginator.collect(client, APP, nil, { in_flight = 3 })))
        end)

        it("leaves no request running after an error in the loop body", function()
            local ok, err = pcall(function()
                for page in paginator.pages(client, APP, { limit = 100 }, { in_flight = 4 }) do
                    if page.page == 2 then
                        error("stop here")
                    end
                end
            end)
            assert.is_false(ok)
            assert.matches("stop here", err)
            assert_walk_left(client)
        end)

        it("raises on bad arguments before any request", function()
            local before = emulator.stats().total
            local bad = {
                { { nickname = "x" }, "unknown parameter nickname" },
                { { login_count = { like = "1%" } }, "operator like not allowed" },
                { { created_at = { not_like = "2024%" } }, "operator not_like not allowed" },
                { { order_by = "identifier:ASC" }, "cannot order by identifier" },
                { { order_by = { { "nickname", "ASC" } } }, "unknown field" },
                { { order_by = "id:UP" }, "direction" },
                { { status = "banned" }, "not one of active" },
                { { status = { gt = 3 } }, "expected a non%-empty string" },
                { { login_count = -1 }, "whole number" },
                { { identifier = { gt = "a", lt = "b" } }, "exactly one operator" },
                { { page = 2 }, "page is set by the walk" },
                { { limit = 501 }, "limit" },
                { { limit = 0 }, "limit" },
                { "status=active", "expected a params table" },
            }
            for _, b in ipairs(bad) do
                for _, f in ipairs { paginator.users, paginator.pages, paginator.collect } do
                    local ok, err = pcall(function()
                        local r = f(client, APP, b[1])
                        return r
                    end)
                    assert.is_false(ok)
                    assert.matches(b[2], err)
                    assert.matches("paginator_spec.lua:%d+:", err)
                end
            end
            local opts = {
                { { in_flight = 0 }, "in_flight" },
                { { in_flight = 65 }, "in_flight" },
                { { in_flight = 1.5 }, "in_flight" },
                { { inflight = 2 }, "unknown option inflight" },
                { 4, "options table" },
            }
            for _, o in ipairs(opts) do
                local ok, err = pcall(paginator.users, client, APP, nil, o[1])
                assert.is_false(ok)
                assert.matches(o[2], err)
            end
            assert.has_error(function() paginator.users({}, APP) end)
            assert.has_error(function() paginator.users(client, "") end)
            assert.has_error(function() paginator.collect(client, nil) end)
            assert.equal(before, emulator.stats().total)
        end)
    end)

    describe("at the end of the list", function()
        local client
        before_each(function()
            emulator.reset()
            client = new_client()
        end)
        after_each(function()
            client:close()
        end)

        it("stops on an empty app after one request", function()
            emulator.add_app("empty_app", "test_key")
            emulator.reset_stats()
            local n = 0
            for _ in paginator.users(client, "empty_app", { limit = 10 }) do
                n = n + 1
            end
            assert.equal(0, n)
            for _ in paginator.pages(client, "empty_app", nil, { in_flight = 4 }) do
                n = n + 1
            end
            assert.equal(0, n)
            local got = assert(paginator.collect(client, "empty_app"))
            assert.equal(0, #got)
            assert.equal(3, emulator.stats().total)
        end)

        it("stops on an exact multiple of limit without an extra request", function()
            emulator.seed(APP, 1000, 3)
            for _, k in ipairs { 1, 4 } do
                emulator.reset_stats()
                local got = walk_ids(client, { limit = 250 }, { in_flight = k })
                assert.equal(1000, #got)
                assert.equal(4, emulator.stats().total)
            end
        end)

        it("stops on a short last page", function()
            emulator.seed(APP, 1001, 3)
            for _, k in ipairs { 1, 3 } do
                emulator.reset_stats()
                local pages = {}
                for page in paginator.pages(client, APP, { limit = 250 }, { in_flight = k }) do
                    pages[#pages + 1] = #page.users
                end
                assert.same({ 250, 250, 250, 250, 1 }, pages)
                assert.equal(5, emulator.stats().total)
            end
        end)
    end)

    -- A private server scripting list pages the emulator never gives.
    describe("against a scripted server", function()
        local server = require "support.test_server"
        local http = require "socket.http"
        setup(function()
            server.start()
        end)
        teardown(function()
            server.stop()
        end)
        local function scripted(total, present, short_first)
            http.request(server.url("/pages-log")) -- forget earlier requests
            return users.new { api_key = "k", max_attempts = 1,
                base_url = server.url(string.format("/pages/%d/%d/%d/v1", total, present,
                    short_first or 0)) }
        end
        local function requested_pages()
            local body = assert(http.request(server.url("/pages-log")))
            local pages = {}
            for n in body:gmatch("(%d+),") do
                pages[#pages + 1] = tonumber(n)
            end
            return pages
        end

        it("stops on an empty last page when total_users overstates", function()
            local client = scripted(50, 40)
            local got = assert(paginator.collect(client, APP, { limit = 10 }))
            assert.equal(40, #got)
            assert.same({ 1, 2, 3, 4, 5 }, requested_pages())
        end)

        it("reads on after a short page that is not the last", function()
            local client = scripted(25, 25, 7)
            local got = assert(paginator.collect(client, APP, { limit = 10 }))
            -- 1..7, then 11..25: what the server gave, not cut at page 1.
            assert.equal(22, #got)
            assert.equal("u0025", got[22].id)
        end)
    end)

    describe("while users change", function()
        local client
        before_each(function()
            emulator.reset()
            emulator.seed(APP, 3000, 5)
            client = new_client()
        end)
        after_each(function()
            client:close()
        end)

        it("does not show users created during the walk", function()
            local original = ids_of(list_all(client, APP))
            for _, order in ipairs { "created_at:ASC", "created_at:DESC" } do
                local got, created, n = {}, {}, 0
                for page in paginator.pages(client, APP, { limit = 200, order_by = order }) do
                    if page.page == 1 then
                        -- Out of the pinned window: created after its second.
                        sleep_past(page.created_before)
                        for i = 1, 5 do
                            n = n + 1
                            local u = assert(client:create_user(APP,
                                { email = "new" .. order:sub(-3) .. i .. "@example.com" }))
                            created[u.id] = true
                        end
                    end
                    for _, u in ipairs(page.users) do
                        assert.is_nil(created[u.id])
                        got[#got + 1] = u.id
                    end
                end
                assert_each_once(original, got)
                for id in pairs(created) do
                    assert(client:delete_user(APP, id))
                end
            end
        end)

        -- Users created within the pinned second itself are inside the
        -- window; with a descending order they land before the walk's
        -- position and push every page to the right.
        it("has no duplicates when users are created in the pinned second", function()
            local original = ids_of(list_all(client, APP))
            -- Start just after a second boundary so that the first page and
            -- the new users share one second.
            sleep_past(math.floor(socket.gettime()) + 1)
            for _, count in ipairs { 60, 250 } do
                local got, created, new_seen = {}, {}, 0
                for page in paginator.pages(client, APP, { limit = 100, order_by = "created_at:DESC" }) do
                    if page.page == 1 then
                        for i = 1, count do
                            local u = assert(client:create_user(APP,
                                { email = "s" .. count .. "." .. i .. "@example.com" }))
                            created[u.id] = true
                        end
                        assert.is_true(socket.gettime() < page.created_before, "left the second")
                    end
                    for _, u in ipairs(page.users) do
                        if created[u.id] then
                            new_seen = new_seen + 1
                        else
                            got[#got + 1] = u.id
                        end
                    end
                end
                assert_each_once(original, got)
                -- Fewer than a page: all of them before the walk's position.
                -- More: the overflow shows up once, never a duplicate.
                assert.equal(math.max(0, count - 100), new_seen)
                for id in pairs(created) do
                    assert(client:delete_user(APP, id))
                end
                sleep_past(math.floor(socket.gettime()) + 1)
            end
        end)

        for _, k in ipairs { 1, 4, 8 } do
            it("sees each original match once when the body deactivates and deletes (in_flight "
                .. k .. ")", function()
                local want = ids_of(select_users(list_all(client, APP), function(u)
                    return u.status == "active"
                end))
                local got, n = {}, 0
                for u in paginator.users(client, APP, { status = "active", limit = 100 },
                        { in_flight = k }) do
                    n = n + 1
                    got[#got + 1] = u.id
                    if n % 2 == 0 then
                        assert(client:deactivate_user(APP, u.id))
                    elseif n % 7 == 0 then
                        assert(client:delete_user(APP, u.id))
                    end
                end
                assert_each_once(want, got)
            end)

            it("sees everybody once when the body deletes every user (in_flight " .. k .. ")",
                function()
                local want = ids_of(list_all(client, APP))
                local got = {}
                for u in paginator.users(client, APP, { limit = 100 }, { in_flight = k }) do
                    got[#got + 1] = u.id
                    assert(client:delete_user(APP, u.id))
                end
                assert_each_once(want, got)
                assert.equal(0, assert(client:list_paginated_users(APP)).total_users)
            end)
        end

        it("copes with users deleted by someone else ahead of the walk", function()
            local all = ids_of(list_all(client, APP))
            local other = new_client()
            for _, case in ipairs { { limit = 100, from = 1000, count = 250 },
                    { limit = 20, from = 1500, count = 400 } } do
                local gone = {}
                local got = {}
                for u in paginator.users(client, APP, { limit = case.limit }) do
                    got[#got + 1] = u.id
                    if #got == case.limit + 10 then
                        for i = case.from, case.from + case.count - 1 do
                            assert(other:delete_user(APP, all[i]))
                            gone[all[i]] = true
                        end
                    end
                end
                local want = {}
                for _, id in ipairs(all) do
                    if not gone[id] then
                        want[#want + 1] = id
                    end
                end
                assert_each_once(want, got)
                all = want
            end
            other:close()
        end)

        it("copes with users deleted by someone else behind the walk", function()
            local all = ids_of(list_all(client, APP))
            local other = new_client()
            local got = {}
            for u in paginator.users(client, APP, { limit = 100 }) do
                got[#got + 1] = u.id
                if #got == 650 then
                    for i = 101, 400 do
                        assert(other:delete_user(APP, all[i]))
                    end
                end
            end
            assert_each_once(all, got)
            other:close()
        end)

        it("raises rather than guess when too many users left behind the walk", function()
            local all = ids_of(list_all(client, APP))
            local other = new_client()
            local got = {}
            local ok, err = pcall(function()
                for u in paginator.users(client, APP, { limit = 10 }) do
                    got[#got + 1] = u.id
                    if #got == 500 then
                        for i = 1, 400 do
                            assert(other:delete_user(APP, all[i]))
                        end
                    end
                end
            end)
            assert.is_false(ok)
            assert.equal("changed", err.kind)
            assert.matches("restart", tostring(err))
            local seen = {}
            for _, id in ipairs(got) do
                assert.is_nil(seen[id])
                seen[id] = true
            end
            other:close()
        end)
    end)

    describe("when a page fails", function()
        local client
        setup(function()
            emulator.reset()
            emulator.seed(APP, 1200, 9)
        end)
        before_each(function()
            emulator.faults { clear = true }
            emulator.reset_stats()
            client = new_client()
        end)
        after_each(function()
            emulator.faults { clear = true }
            client:close()
        end)

        -- Lets the first API request through untouched.
        local PASS = { trickle_ms = 1, chunk = 1048576 }

        for _, k in ipairs { 1, 4 } do
            it("raises the err table from a for loop (in_flight " .. k .. ")", function()
                local n = 0
                -- Page 1 passes; the next request fails (with K > 1 it is
                -- on the wire before the body has page 1).
                emulator.faults { next = { PASS, { status = 500 } } }
                local ok, err = pcall(function()
                    for page in paginator.pages(client, APP, { limit = 500 }, { in_flight = k }) do
                        n = n + 1
                        assert.equal(n, page.page)
                    end
                end)
                assert.is_false(ok)
                assert.equal("table", type(err))
                assert.equal("http", err.kind)
                assert.equal(500, err.status)
                assert.equal("list_paginated_users", err.operation)
                assert.equal(1, err.attempts)
                -- With prefetch, a later page may be the one that failed.
                assert.is_true(n >= 1 and n <= k)
                assert_walk_left(client)
            end)
        end

        it("raises from the users iterator too", function()
            local n = 0
            local ok, err = pcall(function()
                for _ in paginator.users(client, APP, { limit = 500 }) do
                    n = n + 1
                    if n == 1 then
                        emulator.faults { next = { { status = 500 } } }
                    end
                end
            end)
            assert.is_false(ok)
            assert.equal(500, err.status)
            assert.equal(500, n)
        end)

        it("returns nil, err from collect", function()
            emulator.faults { next = { PASS, { status = 500 } } }
            local got, err = paginator.collect(client, APP, { limit = 500 })
            assert.is_nil(got)
            assert.equal("http", err.kind)
            assert.equal(500, err.status)
            assert.equal(2, emulator.stats().total)
        end)

        it("retries a 503 mid-walk transparently", function()
            emulator.faults { next = { PASS, { status = 503, count = 2 } } }
            local got = assert(paginator.collect(client, APP, { limit = 500 }))
            assert.equal(1200, #got)
            local stats = emulator.stats()
            assert.equal(2, emulator.count(stats, "GET /apps/{app_id}/users", 503))
            assert.equal(3, emulator.count(stats, "GET /apps/{app_id}/users", 200))
        end)

        it("cancels a prefetch that is waiting to retry on break", function()
            local n = 0
            for _ in paginator.pages(client, APP, { limit = 100 }, { in_flight = 6 }) do
                n = n + 1
                if n == 2 then
                    -- Let the prefetched pages 3..7 finish, then make the
                    -- next request (page 8) answer 503 and back off.
                    while client:pending() > 0 do
                        client:poll(50)
                    end
                    emulator.faults { next = { { status = 503, retry_after = "2" } } }
                elseif n == 3 then
                    local t = socket.gettime()
                    while socket.gettime() < t + 0.3 do
                        client:poll(50)
                    end
                    assert.equal(1, client:pending())
                    break
                end
            end
            assert.equal(3, n)
            assert_walk_left(client)
            assert.equal(1, emulator.count(emulator.stats(), "GET /apps/{app_id}/users", 503))
        end)
    end)
end)
