--- Walks every user of an app that matches the list params, with one
-- for loop.
--
-- **A stable window**: the first page's `created_before` is pinned and sent
-- with every later page, so users created during the walk do not shift
-- pages or appear twice. (Users created in the pinned second itself are
-- inside the window: they may show up, once, depending on the order.)
--
-- **Exactly once**: users that stop matching or are deleted during the
-- walk (the loop body deactivating or deleting them, typically) shift
-- later pages to the left. The walk sees that in `total_users`, steps back,
-- and skips the ids it has already given out, so every user that existed
-- at the start and still matches is seen exactly once. When so many leave
-- at once that the walk can no longer tell where it stood, it fails with
-- kind `"changed"` instead of guessing.
--
-- **Ends right**: at the last page that `total_users` announces, or at an
-- empty page; a short page before that does not end it (a wrong total
-- costs one empty page, never a missed user). A walk never ends early in
-- silence: a page that fails raises its `err` inside a `for` loop (a loop
-- cannot carry `nil, err`), and `collect` returns `nil, err`.
--
-- **Bounded memory**: one page (or `in_flight` pages) plus the ids of the
-- last few pages, however many users the app has.
--
-- On Lua 5.4 the walk is the loop's closing value: leaving the loop early
-- (`break`, an error) cancels its pages in flight; on 5.1 and LuaJIT they
-- finish unread. A walk's requests never come out of the client's
-- `poll`.
-- @module passage.paginator
-- @usage
-- local paginator = require "passage.paginator"
-- for user in paginator.users(client, app_id, { status = "active" }) do
--     client:deactivate_user(app_id, user.id) -- each user once, even so
-- end

-- The ids of the pages read are kept as one string per page (500 strings
-- kept alive per page would age into the old generation of Lua 5.4's
-- collector and make every major collection longer); the map that answers
-- "yielded already?" is built only while a page can hold such users: for
-- some pages after total_users changed, or always when the order is by a
-- field the loop body can change (created_at and id cannot change).
local errors = require "passage.errors"
local filters = require "passage.filters"
local users = require "passage.users"

local paginator = {}

local DEFAULT_LIMIT = 500
-- How many pages back a walk can step after removals (at least; a walk
-- with K pages in flight remembers K + 3, as its prefetched pages can be
-- that far behind the loop body). When more users than that left before
-- the walk's position between two pages, the walk raises a "changed" error
-- rather than leave a gap or repeat users.
local REMEMBERED_PAGES = 8

--- The walk options, the last argument of `users`, `pages` and `collect`;
-- both optional.
-- @table options
-- @tfield[opt=1] int in_flight how many pages are on the wire at once, 1
-- to 64. With K > 1 a page's place goes to the next page as soon as its
-- answer is in, before it is decoded, and stays taken while the loop body
-- works; a page that arrives before its turn waits as bytes and is decoded
-- when the walk reaches it, so users still come out in order. With 1, each
-- request sees what the loop body did to the page before.
-- @tfield[opt] func progress called as each page is handed out (before the
-- loop body sees it) with a table `p`: `p.pages` and `p.users` handed out
-- so far, and `p.total_users`, the server's latest count. A hook that
-- raises ends the walk (its pages in flight cancelled), and its error
-- reaches the caller as it was, from `collect` too.

local function check_walk(client, app_id, params, opts)
    if type(client) ~= "table" or type(client.start_private) ~= "function" then
        errors.argument("paginator: expected a passage.users client, got %s", type(client))
    end
    if params ~= nil and type(params) ~= "table" then
        errors.argument("paginator: expected a params table, got %s", type(params))
    end
    local p = {}
    for k, v in pairs(params or {}) do
        p[k] = v
    end
    if p.page ~= nil then
        errors.argument("paginator: page is set by the walk; leave it out")
    end
    p.limit = p.limit or DEFAULT_LIMIT
    filters.to_query(p) -- every filter checked before the first request
    local in_flight = 1
    if opts ~= nil then
        if type(opts) ~= "table" then
            errors.argument("paginator: expected an options table, got %s", type(opts))
        end
        for k in pairs(opts) do
            if k ~= "in_flight" and k ~= "progress" then
                errors.argument("paginator: unknown option %s", tostring(k))
            end
        end
        in_flight = opts.in_flight or 1
        if not filters.is_whole(in_flight) or in_flight < 1 or in_flight > 64 then
            errors.argument("paginator: in_flight must be a whole number in 1..64")
        end
        if opts.progress ~= nil and type(opts.progress) ~= "function" then
            errors.argument("paginator: progress must be a function")
        end
    end
    if type(app_id) ~= "string" or app_id:match("^%s*$") then
        errors.argument("paginator: app_id must be a non-empty string")
    end
    return { params = p, in_flight = in_flight, progress = opts and opts.progress }
end

-- Whether users keep their place in this order while the walk runs: true
-- when every key is one no update changes. No order_by is the API's
-- default, created_at.
local STABLE_KEYS = { created_at = true, id = true }
local function stable_order(order_by)
    if order_by == nil then
        return true
    end
    for field in (filters.order_by_text(order_by) .. ","):gmatch("([%w_]+):%a+,") do
        if not STABLE_KEYS[field] then
            return false
        end
    end
    return true
end

local Walk = {}
Walk.__index = Walk

local function new_walk(client, app_id, params, in_flight, progress)
    return setmetatable({
        progress = progress, -- opts.progress, told { pages, users, total_users }
        pages_out = 0,    -- pages handed out, and their users
        users_out = 0,
        client = client,
        app_id = app_id,
        params = params,
        in_flight = in_flight,
        limit = params.limit,
        next_page = 1,    -- the next page number to request
        last_page = nil,  -- known once total_users is
        total = nil,      -- total_users of the last accepted page
        queue = {},       -- handles of requested pages, in page order
        recent = {},      -- ids of the last accepted pages (packed), newest first
        seen_in = nil,    -- id -> serial of the newest remembered page holding
                          -- it; only while `watch` > 0 (see watch_for_repeats)
        serial = 0,       -- serial of the last remembered page
        remembered = math.max(REMEMBERED_PAGES, in_flight + 3),
        watch = 0,        -- accepted pages left that may repeat yielded users
        always_watch = not stable_order(params.order_by),
        verify = nil,     -- page whose first user must have been seen already
        done = false,
    }, Walk)
end

function Walk:request(page)
    local p = {}
    for k, v in pairs(self.params) do
        p[k] = v
    end
    p.page = page
    local h = self.client:start_private("list_paginated_users", self.app_id, p)
    self.queue[#self.queue + 1] = { page = page, handle = h }
end

-- Keeps up to in_flight pages requested, never past the last page.
function Walk:fill()
    local want = self.total and self.in_flight or 1
    while #self.queue < want and (not self.last_page or self.next_page <= self.last_page) do
        self:request(self.next_page)
        self.next_page = self.next_page + 1
    end
end

function Walk:drop_queue()
    for _, q in ipairs(self.queue) do
        q.handle:close()
    end
    self.queue = {}
end

-- A page's ids in one string, NUL-separated. (An id with a NUL in it, which
-- no real Passage id has, would come back as pieces and only lose its
-- dedupe after a step back.)
local function pack_ids(ids)
    return { n = #ids, table.concat(ids, "\0") }
end

local function unpack_ids(packed)
    local ids, text = {}, packed[1]
    if packed.n == 0 then
        return ids
    end
    local from = 1
    while true do
        local at = text:find("\0", from, true)
        ids[#ids + 1] = text:sub(from, (at or 0) - 1)
        if not at then
            return ids
        end
        from = at + 1
    end
end

-- Pages from here on may hold users already yielded (total_users changed,
-- so users moved): keep the map of remembered ids for as many accepted
-- pages as are remembered, which is as far as a walk can step back.
function Walk:watch_for_repeats()
    self.watch = self.remembered
    if self.seen_in then
        return
    end
    -- One map over the remembered pages (not a set per page): a lookup per
    -- user however many pages are remembered. Oldest first, so an id in
    -- two pages maps to the newer one, as remember() leaves it.
    local seen_in, recent = {}, self.recent
    for age = #recent, 1, -1 do
        local ids, serial = unpack_ids(recent[age]), self.serial - age + 1
        for i = 1, #ids do
            seen_in[ids[i]] = serial
        end
    end
    self.seen_in = seen_in
end

function Walk:seen(id)
    if not self.seen_in then
        self:watch_for_repeats()
    end
    return self.seen_in[id] ~= nil
end

-- Keeps the page's ids, and the map while it is kept (a hash insert and
-- delete per user, which a walk over a listing nobody changes never pays).
function Walk:remember(list)
    local serial = self.serial + 1
    self.serial = serial
    local ids, seen_in = {}, self.seen_in
    for i = 1, #list do
        local id = list[i].id
        ids[i] = id
        if seen_in then
            seen_in[id] = serial
        end
    end
    local recent = self.recent
    table.insert(recent, 1, pack_ids(ids))
    local oldest = recent[self.remembered + 1]
    if oldest then
        recent[self.remembered + 1] = nil
        if seen_in then
            local gone = serial - self.remembered
            oldest = unpack_ids(oldest)
            for i = 1, #oldest do
                local id = oldest[i]
                if seen_in[id] == gone then
                    seen_in[id] = nil
                end
            end
        end
    end
    if self.watch > 0 then
        self.watch = self.watch - 1
    end
    if self.watch == 0 and not self.always_watch then
        self.seen_in = nil
    end
end

function Walk:set_total(total)
    self.total = total
    self.last_page = math.max(1, math.ceil(total / self.limit))
end

local function changed(walk, message)
    walk:close()
    error(errors.new("changed", { operation = "paginator", message = message }), 0)
end

-- The next page table (users already yielded removed), or nil at the end.
-- Pages left with no users after that are skipped. Raises the err table
-- when a page fails.
function Walk:next()
    while not self.done do
        self:fill()
        local q = table.remove(self.queue, 1)
        if not q then
            self.done = true
            return nil
        end
        if self.in_flight > 1 and self.total then
            -- This page's place on the wire goes to the next one as soon
            -- as its response is in, before it is decoded: K stay in
            -- flight while the walk decodes and while the loop body runs.
            -- (K = 1 stays strictly one page at a time, so each request
            -- sees what the body did to the last page.)
            q.handle:await_response()
            self:fill()
        end
        local page, err = q.handle:wait()
        if not page then
            self:close()
            error(err, 0)
        end
        if not self.params.created_before then
            -- Pin the window: every later page lists the same users.
            self.params.created_before = page.created_before
        end
        if page.limit and page.limit > 0 then
            self.limit = page.limit
        end
        local total = page.total_users
        local shift = self.total and total - self.total or 0
        if shift ~= 0 or self.always_watch then
            self:watch_for_repeats()
        end
        if shift < 0 then
            -- Users went away: if they were before our position, the rest
            -- moved left by -shift. Step back as far as that (the ids of
            -- the pages read since tell what was seen); when that is past
            -- what is remembered, step back as far as remembered and check
            -- there that the removals were not all behind us.
            local accepted = (q.page - 1) * self.limit -- positions already read
            local resume = math.max(1, math.floor((accepted + shift) / self.limit) + 1)
            local oldest = q.page - (self.remembered - 1)
            self.verify = nil
            if resume < oldest then
                resume = oldest
                self.verify = oldest
            end
            self:drop_queue()
            self:set_total(total)
            self.next_page = resume
        else
            if shift ~= 0 or not self.total then
                self:set_total(total)
            end
            local list = page.users
            if self.verify == q.page then
                self.verify = nil
                if list[1] and not self:seen(list[1].id) then
                    changed(self, string.format(
                        "more than %d pages of users left the listing behind the walk; "
                        .. "restart it", self.remembered - 1))
                end
            end
            -- Usually nothing was seen before: the page's own list is kept.
            local fresh = list
            local seen_in = self.seen_in
            for i = 1, seen_in and #list or 0 do
                if seen_in[list[i].id] ~= nil then
                    fresh = {}
                    for j = 1, #list do
                        if seen_in[list[j].id] == nil then
                            fresh[#fresh + 1] = list[j]
                        end
                    end
                    break
                end
            end
            self:remember(list)
            if #list == 0 or q.page >= self.last_page then
                self.done = true
                self:drop_queue()
            end
            if fresh[1] then
                if fresh ~= list then
                    page.users = setmetatable(fresh, getmetatable(list))
                end
                self:report(#fresh)
                return page
            end
        end
    end
    return nil
end

-- Tells opts.progress about a page handed out. A hook that raises ends the
-- walk (its pages in flight cancelled) with the hook's error as it was.
function Walk:report(users_in_page)
    self.pages_out = self.pages_out + 1
    self.users_out = self.users_out + users_in_page
    if self.progress then
        local ok, e = pcall(self.progress,
            { pages = self.pages_out, users = self.users_out, total_users = self.total })
        if not ok then
            self:close()
            error(e, 0)
        end
    end
end

function Walk:close()
    self.done = true
    self:drop_queue()
end
Walk.__close = Walk.close

-- A checked walk, or an argument error (thrown, for the public function to
-- raise at its caller).
local function walk_for(client, app_id, params, opts)
    local checked = check_walk(client, app_id, params, opts)
    return new_walk(client, app_id, checked.params, checked.in_flight, checked.progress)
end

--- Iterates the pages of the walk.
--
-- Each is a page as
-- @{passage.users.Client:list_paginated_users|list_paginated_users}
-- returns it (`passage.schema.page`), holding only the users not handed
-- out before; a page left with none is skipped, so an empty app yields no
-- page.
-- @param client a `passage.users` client
-- @string app_id the app
-- @tparam[opt] table params the list params (`passage.filters.params`)
-- but `page`, which the walk sets; `limit` defaults to 500
-- @tparam[opt] table opts the walk `options`
-- @return the iterator, for a generic `for`
-- @raise a bad argument, at once; in the loop, a page's `err` (a
-- `passage.errors.err`) or a progress hook's error
-- @usage
-- for page in paginator.pages(client, app_id, { limit = 100 }) do
--     print(page.page, #page.users, page.total_users)
-- end
function paginator.pages(client, app_id, params, opts)
    local ok, walk = pcall(walk_for, client, app_id, params, opts)
    if not ok then
        errors.rethrow(walk)
    end
    return Walk.next, walk, nil, walk
end

--- Iterates the users of the walk, one at a time, each a
-- `passage.schema.user` as a listing holds it.
-- @param client a `passage.users` client
-- @string app_id the app
-- @tparam[opt] table params the list params (`passage.filters.params`)
-- but `page`, which the walk sets; `limit` defaults to 500
-- @tparam[opt] table opts the walk `options`
-- @return the iterator, for a generic `for`
-- @raise a bad argument, at once; in the loop, a page's `err` (a
-- `passage.errors.err`) or a progress hook's error
-- @usage
-- for user in paginator.users(client, app_id, { login_count = { gt = 5 } },
--                             { in_flight = 8 }) do
--     print(user.id, user.email)
-- end
function paginator.users(client, app_id, params, opts)
    local ok, walk = pcall(walk_for, client, app_id, params, opts)
    if not ok then
        errors.rethrow(walk)
    end
    local list, i = nil, 0
    local function next_user()
        while true do
            if list then
                i = i + 1
                local user = list[i]
                if user then
                    return user
                end
            end
            local page = walk:next()
            if not page then
                return nil
            end
            list, i = page.users, 0
        end
    end
    return next_user, walk, nil, walk
end

--- Every user of the walk in one array.
-- @param client a `passage.users` client
-- @string app_id the app
-- @tparam[opt] table params the list params (`passage.filters.params`)
-- but `page`, which the walk sets; `limit` defaults to 500
-- @tparam[opt] table opts the walk `options`
-- @treturn[1] {passage.schema.user,...} the users, in the walk's order (the
-- array has the metatable `passage.users.array_mt`)
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong
-- @raise a bad argument, or a progress hook's error
-- @usage
-- local all, err = paginator.collect(client, app_id,
--     { identifier = { like = "%@old.example" } })
function paginator.collect(client, app_id, params, opts)
    local ok, walk = pcall(walk_for, client, app_id, params, opts)
    if not ok then
        errors.rethrow(walk)
    end
    local all = setmetatable({}, users.array_mt)
    local walked, err = pcall(function()
        for page in Walk.next, walk do
            local list = page.users
            for i = 1, #list do
                all[#all + 1] = list[i]
            end
        end
    end)
    if not walked then
        if errors.is_error(err) then
            return nil, err
        end
        error(err, 0)
    end
    return all
end

return paginator
