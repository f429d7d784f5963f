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
-- **Without blocking**: `start` returns the walk at once; a host's loop
-- drives the client (`Client:poll`, `Client:socket_action`, or an attached
-- loop) and takes the users decoded so far with `Walk:ready`, which never
-- blocks. `users`, `pages` and `collect` are that walk plus waiting: one
-- way through, with the same guarantees.
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
-- -- in a game server's step, never blocking:
-- local walk = paginator.start(client, app_id, { status = "active" }, { in_flight = 4 })
-- client:poll(0, { max_ms = 5 })
-- for user in walk:ready() do index(user) end
-- if walk:done() then finish(walk:err()) end

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

local argerror = errors.argument_in("passage.paginator")

local DEFAULT_LIMIT = 500
-- How many pages back a walk can step after removals (at least; a walk
-- with K pages in flight remembers K + 3, as its prefetched pages can be
-- that far behind the loop body). When more users than that left before
-- the walk's position between two pages, the walk ends with a "changed"
-- error rather than leave a gap or repeat users.
local REMEMBERED_PAGES = 8
local MAX_IN_FLIGHT = 64

--- The walk options, the last argument of `start`, `users`, `pages` and
-- `collect`; both optional.
-- @table options
-- @tfield[opt=1] int in_flight how many pages are on the wire at once, 1
-- to 64. With K > 1 the walk keeps K pages requested ahead of the one the
-- host is reading; pages that arrive early wait, decoded, until the walk
-- reaches them, so users still come out in order. With 1, each request is
-- made after the host has read the page before, so it sees what the host
-- did to that page.
-- @tfield[opt] func progress called as each page is handed out (before the
-- loop body sees it) with a table `p`: `p.pages` and `p.users` handed out
-- so far, and `p.total_users`, the server's latest count. A hook that
-- raises ends the walk (its pages in flight cancelled), and its error
-- reaches the caller as it was, from `collect` too.

local function check_options(opts)
    if opts == nil then
        return 1, nil
    end
    if type(opts) ~= "table" then
        argerror("expected an options table, got %s", type(opts))
    end
    for k in pairs(opts) do
        if k ~= "in_flight" and k ~= "progress" then
            argerror("unknown option %s", tostring(k))
        end
    end
    local in_flight = opts.in_flight or 1
    if not filters.is_whole(in_flight) or in_flight < 1 or in_flight > MAX_IN_FLIGHT then
        argerror("in_flight must be a whole number in 1..%d", MAX_IN_FLIGHT)
    end
    if opts.progress ~= nil and type(opts.progress) ~= "function" then
        argerror("progress must be a function")
    end
    return in_flight, opts.progress
end

-- The walk's list params, checked as list_paginated_users checks them (the
-- client's own check: one rule for app_id and every filter).
local function check_params(client, app_id, params)
    if not users.is_client(client) then
        argerror("expected a passage.users client, got %s", type(client))
    end
    if client.engine.closed then
        argerror("walk on a closed client")
    end
    if params ~= nil and type(params) ~= "table" then
        argerror("expected a params table, got %s", type(params))
    end
    local p = {}
    for k, v in pairs(params or {}) do
        p[k] = v
    end
    if p.page ~= nil then
        argerror("page is set by the walk; leave it out")
    end
    p.limit = p.limit or DEFAULT_LIMIT
    local ok, problem = pcall(client.check, client, "list_paginated_users", app_id, p)
    if not ok then
        argerror("%s", tostring(problem))
    end
    return p
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
-- The walk's own steps: functions of a walk, kept off its metatable so
-- that its methods are only those of the reference.
local inner = {}

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
function inner.watch_for_repeats(self)
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

function inner.seen(self, id)
    if not self.seen_in then
        inner.watch_for_repeats(self)
    end
    return self.seen_in[id] ~= nil
end

-- Keeps the page's ids, and the map while it is kept (a hash insert and
-- delete per user, which a walk over a listing nobody changes never pays).
function inner.remember(self, list)
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

function inner.set_total(self, total)
    self.total = total
    self.last_page = math.max(1, math.ceil(total / self.limit))
end

-- The walk's state. Its pages move through three places: `queue`, the
-- pages requested, in page order; `buffer`, pages accepted (their users
-- not handed out before) and waiting for the host; `current`, the users of
-- the page the host is reading.
local function new_walk(client, app_id, params, in_flight, progress)
    local walk = setmetatable({
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
        queue = {},       -- { page =, handle = } of requested pages, in page order
        buffer = {},      -- accepted pages not handed out yet
        current = nil,    -- users of the page being read, and the last one read
        position = 0,
        recent = {},      -- ids of the last accepted pages (packed), newest first
        seen_in = nil,    -- id -> serial of the newest remembered page holding
                          -- it; only while `watch` > 0 (see watch_for_repeats)
        serial = 0,       -- serial of the last remembered page
        remembered = math.max(REMEMBERED_PAGES, in_flight + 3),
        watch = 0,        -- accepted pages left that may repeat yielded users
        always_watch = not stable_order(params.order_by),
        verify = nil,     -- page whose first user must have been seen already
        requesting = true, -- false once no more pages are to be requested
        failure = nil,    -- the err that ended the walk
        advancing = false,
        sink = nil,
    }, Walk)
    -- Pages finish into the walk itself (never into the host's poll): the
    -- walk accepts them in order and keeps its pages requested.
    walk.sink = function()
        inner.advance(walk)
    end
    return walk
end

-- Requesting pages ----------------------------------------------------------

-- Ends the walk's requests; the pages already accepted are still handed
-- out, then err() tells why the walk ended.
function inner.fail(self, err)
    if self.failure == nil then
        self.failure = err
    end
    inner.stop_requesting(self)
end

function inner.drop_queue(self)
    local queue = self.queue
    self.queue = {}
    for _, q in ipairs(queue) do
        q.handle:close()
    end
end

function inner.stop_requesting(self)
    self.requesting = false
    inner.drop_queue(self)
end

function inner.request(self, page)
    local p = {}
    for k, v in pairs(self.params) do
        p[k] = v
    end
    p.page = page
    local h, err = users.start_owned(self.client, self.sink, "list_paginated_users", self.app_id, p)
    if not h then
        return inner.fail(self, err) -- the client was closed
    end
    local q = { page = page, handle = h, arrived = false }
    if self.in_flight > 1 then
        h.on_arrival = function()
            q.arrived = true
            inner.fill(self) -- its place on the wire goes to the next page now
        end
    end
    self.queue[#self.queue + 1] = q
end

-- Pages requested, accepted or being read, against what the walk may hold:
-- one until total_users is known. With K = 1, the next page only once the
-- host has read this one. With K > 1, K pages on the wire at most, and K
-- held in all while the host reads one (so a host that reads slowly holds
-- K pages at most); between pages, a page whose answer is in gives its
-- place on the wire to the next before it is decoded (K + 1 held).
function inner.room(self)
    local held = #self.queue + #self.buffer + (self.current and 1 or 0)
    if not self.total or self.in_flight == 1 then
        return held < 1
    end
    local on_wire = 0
    for _, q in ipairs(self.queue) do
        if not q.arrived and not q.handle:done() then
            on_wire = on_wire + 1
        end
    end
    local most = self.current and self.in_flight or self.in_flight + 1
    return on_wire < self.in_flight and held < most
end

function inner.fill(self)
    while self.requesting and inner.room(self)
            and (not self.last_page or self.next_page <= self.last_page) do
        inner.request(self, self.next_page)
        self.next_page = self.next_page + 1
    end
    if self.requesting and self.queue[1] == nil and self.buffer[1] == nil
            and self.current == nil then
        self.requesting = false -- nothing left to ask for
    end
end

-- Accepting pages -----------------------------------------------------------

-- Users went away: if they were before the walk's position, the rest moved
-- left by -shift. Steps back as far as that (the ids of the pages read
-- since tell what was seen); when that is past what is remembered, steps
-- back as far as remembered and checks there that the removals were not
-- all behind the walk.
function inner.step_back(self, page_number, shift, total)
    local accepted = (page_number - 1) * self.limit -- positions already read
    local resume = math.max(1, math.floor((accepted + shift) / self.limit) + 1)
    local oldest = page_number - (self.remembered - 1)
    self.verify = nil
    if resume < oldest then
        resume = oldest
        self.verify = oldest
    end
    inner.drop_queue(self)
    inner.set_total(self, total)
    self.next_page = resume
end

-- The users of `list` not handed out before (usually `list` itself).
function inner.fresh(self, list)
    local seen_in = self.seen_in
    for i = 1, seen_in and #list or 0 do
        if seen_in[list[i].id] ~= nil then
            local fresh = {}
            for j = 1, #list do
                if seen_in[list[j].id] == nil then
                    fresh[#fresh + 1] = list[j]
                end
            end
            return setmetatable(fresh, getmetatable(list))
        end
    end
    return list
end

-- Takes in the next page of the walk: its users not handed out before go to
-- the buffer; a shrunken total makes the walk step back.
function inner.accept(self, page_number, page)
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
        inner.watch_for_repeats(self)
    end
    if shift < 0 then
        return inner.step_back(self, page_number, shift, total)
    end
    if shift ~= 0 or not self.total then
        inner.set_total(self, total)
    end
    local list = page.users
    if self.verify == page_number then
        self.verify = nil
        if list[1] and not inner.seen(self, list[1].id) then
            return inner.fail(self, errors.new("changed", { operation = "paginator", message =
                string.format("more than %d pages of users left the listing behind the walk; "
                    .. "restart it", self.remembered - 1) }))
        end
    end
    local fresh = inner.fresh(self, list)
    inner.remember(self, list)
    if #list == 0 or page_number >= self.last_page then
        inner.stop_requesting(self)
    end
    if fresh[1] then
        page.users = fresh
        self.buffer[#self.buffer + 1] = page
    end
end

-- Accepts the finished pages at the head of the queue, in page order, and
-- requests more.
function inner.accept_finished(self)
    local queue = self.queue
    while queue[1] and queue[1].handle:done() do
        local q = table.remove(queue, 1)
        local page, err = q.handle:result()
        if page then
            inner.accept(self, q.page, page)
        else
            inner.fail(self, err)
        end
        queue = self.queue -- a step back replaces it
    end
    inner.fill(self)
end

-- Runs as each page finishes (the sink of the walk's handles) and as the
-- host reads; never re-entered. What goes wrong ends the walk, except the
-- interpreter's Ctrl-C, which goes on up.
function inner.advance(self)
    if self.advancing then
        return
    end
    self.advancing = true
    local ok, problem = pcall(inner.accept_finished, self)
    self.advancing = false
    if not ok then
        if errors.is_interrupt(problem) then
            inner.fail(self, errors.new("cancelled", { operation = "paginator",
                message = "interrupted" }))
            error(problem, 0)
        end
        inner.fail(self, errors.is_error(problem) and problem
            or errors.new("decode", { operation = "paginator", message = tostring(problem) }))
    end
end

-- Handing out -------------------------------------------------------------

-- Tells opts.progress about a page handed out. A hook that raises ends the
-- walk (its pages in flight cancelled) with the hook's error as it was.
function inner.report(self, users_in_page)
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

-- The next accepted page, handed out (the page being read is done with),
-- or nil when none is ready.
function inner.take_page(self)
    self.current = nil
    inner.advance(self)
    local page = table.remove(self.buffer, 1)
    if page then
        self.current, self.position = page.users, 0
        inner.report(self, #page.users)
        inner.advance(self) -- K = 1: the next page once this one is handed out
    end
    return page
end

-- Waiting ----------------------------------------------------------------

-- The next page, waiting for it; nil at the end. Raises the err that
-- ended the walk, once its pages are all handed out.
function inner.await_page(self)
    while true do
        local page = inner.take_page(self)
        if page then
            return page
        end
        local q = self.queue[1]
        if q then
            q.handle:wait() -- its sink accepts it
        elseif self:done() then
            if self.failure then
                error(self.failure, 0)
            end
            return nil
        end
    end
end

-- A checked walk, started, or an argument error (thrown, for the public
-- function to raise at its caller).
local function walk_for(client, app_id, params, opts)
    local in_flight, progress = check_options(opts)
    local walk = new_walk(client, app_id, check_params(client, app_id, params), in_flight, progress)
    inner.fill(walk)
    return walk
end


--- Starts a walk and returns it at once; its first page is on the wire.
--
-- The walk moves on whenever the client is driven (`Client:poll`,
-- `Client:socket_action`, an attached loop, a blocking call) and hands
-- out users with `Walk:ready`. Each user once, the window pinned, as
-- `users` walks.
-- @param client a `passage.users` client
-- @string app_id the app
-- @tparam[opt] table params the list params (`passage.filters.params`)
-- but `page`, which the walk sets; `limit` defaults to 500
-- @tparam[opt] table opts the walk `options`
-- @treturn Walk the walk
-- @raise a bad argument, at once
-- @function start
-- @usage
-- local walk = paginator.start(client, app_id, nil, { in_flight = 4 })
-- repeat
--     client:poll(16, { max_ms = 4 })
--     for user in walk:ready() do count = count + 1 end
-- until walk:done()
-- assert(not walk:err())
paginator.start = errors.guard(walk_for)

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
-- @function pages
paginator.pages = errors.guard(function(client, app_id, params, opts)
    local walk = walk_for(client, app_id, params, opts)
    return inner.await_page, walk, nil, walk
end)

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
-- @function users
paginator.users = errors.guard(function(client, app_id, params, opts)
    local walk = walk_for(client, app_id, params, opts)
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
            local page = inner.await_page(walk)
            if not page then
                return nil
            end
            list, i = page.users, 0
        end
    end
    return next_user, walk, nil, walk
end)

--- Every user of the walk in one array.
-- @param client a `passage.users` client
-- @string app_id the app
-- @tparam[opt] table params the list params (`passage.filters.params`)
-- but `page`, which the walk sets; `limit` defaults to 500
-- @tparam[opt] table opts the walk `options`
-- @treturn[1] {passage.schema.user,...} the users, in the walk's order (the
-- array has the metatable `passage.users.array_mt`)
-- @treturn[2] nil on failure
-- @treturn[2] passage.errors.err what went wrong (`kind` `"cancelled"`
-- when the client was closed during the walk)
-- @raise a bad argument, or a progress hook's error
-- @usage
-- local all, err = paginator.collect(client, app_id,
--     { identifier = { like = "%@old.example" } })
-- @function collect
paginator.collect = errors.guard(function(client, app_id, params, opts)
    local walk = walk_for(client, app_id, params, opts)
    local all = setmetatable({}, users.array_mt)
    local walked, err = pcall(function()
        for page in inner.await_page, walk do
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
end)

--- A walk started with `start`; `users`, `pages` and `collect` run one too.
-- @type Walk

--- Iterates the users of the pages already decoded, and never blocks. A
-- loop that ends early (a `break`) leaves the rest for the next `ready`.
-- @return the iterator, for a generic `for`
-- @raise a progress hook's error
-- @usage
-- for user in walk:ready() do index(user) end
function Walk:ready()
    return function()
        while true do
            local list = self.current
            if list then
                local i = self.position + 1
                local user = list[i]
                if user then
                    self.position = i
                    return user
                end
            end
            if not inner.take_page(self) then
                return nil
            end
        end
    end
end

--- Whether the walk has ended: every user handed out, or an error (see
-- `Walk:err`), or `Walk:close`.
-- @treturn bool true once nothing more will come
function Walk:done()
    if self.current and self.current[self.position + 1] then
        return false
    end
    return not self.requesting and self.queue[1] == nil and self.buffer[1] == nil
end

--- The error that ended the walk, if one did.
-- @treturn[opt] passage.errors.err what went wrong: a page's err, `kind`
-- `"changed"` when the walk could no longer tell where it stood, or
-- `"cancelled"` when the client was closed
function Walk:err()
    return self.failure
end

--- Ends the walk now: its pages in flight are cancelled, nothing more is
-- handed out. It is also the walk's `__close`.
function Walk:close()
    self.buffer, self.current = {}, nil
    inner.stop_requesting(self)
end
Walk.__close = Walk.close

function Walk:__tostring()
    return string.format("passage.walk (%s, %d users handed out)",
        self:done() and "done" or "running", self.users_out)
end

return paginator
