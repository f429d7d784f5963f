-- The reference: `make docs` builds it with no warning, and every public
-- name has an entry in the HTML. The names come from the code and its data
-- (the client's and the handle's metatables, users.OPERATIONS,
-- options.LIST, filters.FIELDS, schema's shapes, the error kinds the
-- sources make), so a public function, option or field added without its
-- doc comment fails here; and every documented name exists, so a renamed
-- or removed one fails too.
local spec_files = require("support.files")
local emulator = require "support.emulator"
local filters = require "passage.filters"
local options = require "passage.options"
local paginator = require "passage.paginator"
local run = require "support.shell"
local schema = require "passage.schema"
local users = require "passage.users"

-- Public by name but not for scripts, so not in the reference, each with
-- the reason.
local INTERNAL = {
    ["users.start_owned"] = "a seam for passage.paginator: its handles never come out of poll",
    ["users.is_client"] = "how passage.paginator knows a client",
    ["users.check_budget"] = "poll's check of max_ms, for passage.loop.*",
}

-- The stable fields of an error (the house rule's list).
local ERROR_FIELDS = { "kind", "status", "code", "message", "body", "attempts", "operation",
    "retry_after" }

local function read(path)
    return assert(spec_files.read(path))
end

local function plain_text(html)
    return (html:gsub("<[^>]*>", " "):gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">")
        :gsub("&amp;", "&"):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

-- The entries of one generated page: name -> { text = the description,
-- fields = { name -> text } } (the fields of a table entry).
local function entries_of(html)
    local out = {}
    for name, block in html:gmatch('<a name = "([^"]+)"></a>(.-)</dd>') do
        local description = block:match("<dd>(.-)<h3>") or block:match("<dd>(.*)$") or ""
        local fields = {}
        for field, text in block:gmatch('<li><span class="parameter">([^<]+)</span>(.-)</li>') do
            fields[field] = plain_text(text)
        end
        out[name] = { text = plain_text(description), fields = fields }
    end
    return out
end

-- The function names of a method table, metamethods left out.
local function methods_of(mt)
    local names = {}
    for name, v in pairs(mt) do
        if type(v) == "function" and not name:match("^__") then
            names[#names + 1] = name
        end
    end
    table.sort(names)
    return names
end

local function set_of(list)
    local set = {}
    for _, v in ipairs(list) do
        set[v] = true
    end
    return set
end

local function keys_of(t)
    local list = {}
    for k in pairs(t) do
        list[#list + 1] = k
    end
    table.sort(list)
    return list
end

describe("the reference", function()
    local dir, pages

    -- Each public name `name` of a page has an entry with a description.
    local function assert_entry(page, name)
        local entry = pages[page][name]
        assert(entry, string.format("%s: no reference entry for %s", page, name))
        assert(entry.text ~= "", string.format("%s: the entry of %s says nothing", page, name))
        return entry
    end

    -- The entry `name` documents exactly the fields `want`, each with words.
    local function assert_fields(page, name, want)
        local entry = assert_entry(page, name)
        for _, field in ipairs(want) do
            assert(entry.fields[field], string.format("%s: %s does not document %s", page, name,
                field))
            assert(entry.fields[field] ~= "", string.format("%s: %s.%s says nothing", page, name,
                field))
        end
        local wanted = set_of(want)
        for field in pairs(entry.fields) do
            assert(wanted[field], string.format("%s: %s documents %s, which is not one", page, name,
                field))
        end
        return entry
    end

    -- The entries of a page whose names start with `prefix` are exactly the
    -- public names `names` (each with that prefix), internal ones aside, and
    -- the names in `others`.
    local function assert_exactly(page, prefix, names, others)
        local public = set_of(others or {})
        for _, name in ipairs(names) do
            local full = prefix .. name
            local internal = INTERNAL[full] or INTERNAL[page:match("[%w_]+$") .. "." .. full]
            if internal then
                assert.is_nil(pages[page][full], full .. " is internal: " .. internal)
            else
                public[full] = true
                assert_entry(page, full)
            end
        end
        for entry in pairs(pages[page]) do
            if entry:sub(1, #prefix) == prefix then
                assert(public[entry], string.format("%s documents %s, which does not exist", page,
                    entry))
            end
        end
    end

    setup(function()
        dir = os.tmpname()
        os.remove(dir)
        -- The Makefile's own target, into a private folder: the spec checks
        -- what `make docs` builds. Not under the outer make's jobserver.
        local ok, out = run("env -u MAKEFLAGS -u MAKELEVEL make -s --no-print-directory docs DOCS_DIR="
            .. dir)
        assert(ok, "make docs failed:\n" .. out)
        assert.is_nil(out:find("warn"), out)
        pages = {}
        for _, m in ipairs { "passage.users", "passage.paginator", "passage.errors",
                "passage.filters", "passage.schema", "passage.loop.luv", "passage.loop.cqueues" } do
            pages[m] = entries_of(read(dir .. "/modules/" .. m .. ".html"))
        end
    end)

    teardown(function()
        if dir then
            run("rm -rf " .. dir .. " " .. dir .. ".warnings")
        end
    end)

    it("has every operation and every method of the client", function()
        for _, name in ipairs(users.OPERATIONS) do
            assert_entry("passage.users", "Client:" .. name)
        end
        local client = users.new { api_key = "test_key", base_url = emulator.url() }
        finally(function() client:close() end)
        local methods = methods_of(getmetatable(client))
        -- The operations are methods too: the list holds both.
        assert.is_true(#methods > #users.OPERATIONS)
        assert_exactly("passage.users", "Client:", methods)
    end)

    it("has every function and field of passage.users and every option", function()
        for name, v in pairs(users) do
            if (type(v) == "function" or name == "OPERATIONS") and not INTERNAL["users." .. name] then
                assert_entry("passage.users", name)
            end
        end
        for _, name in ipairs { "null", "array_mt", "_VERSION" } do
            assert.is_not_nil(users[name])
            assert_entry("passage.users", name)
        end
        local names = {}
        for _, spec in ipairs(options.LIST) do
            names[#names + 1] = spec.name
        end
        local entry = assert_fields("passage.users", "options", names)
        -- Each default, as options.LIST has it.
        for _, spec in ipairs(options.LIST) do
            local shown = entry.fields[spec.name]:match("%(%s*default%s+(.-)%s*%)$")
            if spec.default ~= nil then
                local want = type(spec.default) == "string" and '"' .. spec.default .. '"'
                    or tostring(spec.default)
                assert.are.equal(want, shown, "the default of option " .. spec.name)
            else
                assert.is_nil(shown, "option " .. spec.name .. " has no default")
            end
        end
    end)

    it("has every method of the bulk job and of the walk", function()
        local client = emulator.client()
        finally(function() client:close() end)
        local job = client:start_bulk({ { "get_user", "test_app", "nobody" } })
        job:wait()
        assert_exactly("passage.users", "Job:", methods_of(getmetatable(job)))
        local walk = paginator.start(client, "test_app", { limit = 1 })
        walk:close()
        assert_exactly("passage.paginator", "Walk:", methods_of(getmetatable(walk)))
    end)

    it("has every function of the loop adapters and of their attachments", function()
        for _, name in ipairs { "luv", "cqueues" } do
            local page = "passage.loop." .. name
            local adapter = require(page)
            assert_exactly(page, "", keys_of(adapter), { "Attached:detach" })
            assert_entry(page, "Attached:detach")
        end
    end)

    it("has every method of the request handle", function()
        local client = emulator.client()
        finally(function() client:close() end)
        local h = client:start("get_user", "test_app", "nobody")
        local _, err = h:wait()
        assert.are.equal(404, err.status)
        assert_exactly("passage.users", "Handle:", methods_of(getmetatable(h)))
        for _, field in ipairs { "operation", "connects" } do
            assert.is_not_nil(h[field])
            assert_entry("passage.users", "Handle." .. field)
        end
    end)

    it("has every function and walk option of passage.paginator", function()
        local client = emulator.client()
        finally(function() client:close() end)
        -- The module's functions, its options table and the walk's methods
        -- (checked on their own above).
        local others = { "options" }
        local walk = paginator.start(client, "test_app", { limit = 1 })
        walk:close()
        for _, name in ipairs(methods_of(getmetatable(walk))) do
            others[#others + 1] = "Walk:" .. name
        end
        assert_exactly("passage.paginator", "", keys_of(paginator), others)
        local entry = assert_entry("passage.paginator", "options")
        -- Every documented option is taken (an unknown one raises).
        local sample = { in_flight = 2, progress = function() end }
        for name in pairs(entry.fields) do
            assert(sample[name] ~= nil, "no sample value for walk option " .. name)
            assert.has_no.errors(function()
                paginator.users(client, "test_app", { limit = 1 }, { [name] = sample[name] })
            end)
        end
        local ok, problem = pcall(paginator.users, client, "test_app", nil, { not_an_option = 1 })
        assert.is_false(ok)
        assert.matches("paginator: unknown option not_an_option", problem, 1, true)
        assert.are.same({ "in_flight", "progress" }, keys_of(entry.fields))
    end)

    it("has every field of err and every kind the sources make", function()
        assert_fields("passage.errors", "err", ERROR_FIELDS)
        -- Kinds made in Lua (errors.new("kind", ...)) and by the C
        -- transport (kind_of in src/request.c).
        local kinds = {}
        local _, lua_files = run("ls lua/passage/*.lua")
        for file in lua_files:gmatch("%S+") do
            for kind in read(file):gmatch('errors%.new%("([%w_]+)"') do
                kinds[kind] = true
            end
        end
        local kind_of = read("src/request.c"):match("\nstatic const char %*kind_of%b()%s*(%b{})")
        assert(kind_of, "src/request.c: kind_of not found")
        for kind in kind_of:gmatch('return "([%w_]+)";') do
            kinds[kind] = true
        end
        assert.is_true(kinds.http and kinds.tls and kinds.changed and true)
        assert_fields("passage.errors", "kinds", keys_of(kinds))
        -- The module's functions make errors for the library: none is public.
        assert.are.same({ "err", "kinds" }, keys_of(pages["passage.errors"]))
    end)

    it("has every list param, filter and operator", function()
        local entry = assert_entry("passage.filters", "params")
        local fields = keys_of(filters.FIELDS)
        for _, field in ipairs(fields) do
            assert(entry.fields[field], "passage.filters: params does not document " .. field)
        end
        -- Every documented param is taken (an unknown one raises).
        for name in pairs(entry.fields) do
            local ok, problem = pcall(filters.to_query, { [name] = 1 })
            assert(ok or not tostring(problem):find("unknown parameter"),
                "params documents " .. name .. ", which is not one")
        end
        -- Each filter's operators, as filters.FIELDS has them.
        local all_ops = {}
        for _, field in ipairs(fields) do
            for op in pairs(filters.FIELDS[field].ops) do
                all_ops[op] = true
            end
        end
        local every = #keys_of(all_ops)
        for _, field in ipairs(fields) do
            local ops, text = keys_of(filters.FIELDS[field].ops), entry.fields[field]
            if #ops == every then
                assert(text:find("Every operator", 1, true), field .. ": " .. text)
            else
                assert(not text:find("Every operator", 1, true), field .. ": " .. text)
                for _, op in ipairs(ops) do
                    assert(text:find("%f[%w_]" .. op .. "%f[^%w_]"), field .. " does not name " .. op)
                end
            end
        end
        assert_fields("passage.filters", "operators", keys_of(all_ops))
    end)

    it("has the fields of every result shape", function()
        local user = assert_entry("passage.schema", "user")
        for _, field in ipairs(keys_of(schema.USER)) do
            assert(user.fields[field], "passage.schema: user does not document " .. field)
        end
        local page = assert_entry("passage.schema", "page")
        for _, field in ipairs(keys_of(schema.LIST)) do
            assert(page.fields[field], "passage.schema: page does not document " .. field)
        end
        assert_entry("passage.schema", "device")
    end)

    it("has no link to a page or anchor that is not there", function()
        local _, list = run("cd " .. dir .. " && find . -name '*.html'")
        local anchors, files = {}, {}
        for file in list:gmatch("%S+") do
            file = file:gsub("^%./", "")
            files[#files + 1] = file
            anchors[file] = {}
            for name in read(dir .. "/" .. file):gmatch('<a name%s*=%s*"([^"]+)"') do
                anchors[file][name] = true
            end
        end
        -- "a/b/../c" -> "a/c"
        local function normal(path)
            repeat
                local n
                path, n = path:gsub("[^/]+/%.%./", "", 1)
            until n == 0
            return path
        end
        local checked = 0
        for _, file in ipairs(files) do
            local base = file:match("^(.*)/") or ""
            for href in read(dir .. "/" .. file):gmatch('href="([^"]+)"') do
                local path, anchor = href:match("^([^#]*)#?(.*)$")
                if path:match("%.md$") then
                    -- A page of docs/ in the repository, from build/docs.
                    local target = normal("build/docs/" .. (base ~= "" and base .. "/" or "")
                        .. path)
                    assert(io.open(target), file .. ": link to a missing file " .. href)
                elseif path:match("%.css$") then
                    assert(io.open(dir .. "/" .. normal(base .. "/" .. path)), file .. ": " .. href)
                elseif not href:match("^%a+:") then
                    local target = file
                    if path ~= "" then
                        target = normal((base ~= "" and base .. "/" or "") .. path)
                    end
                    assert(anchors[target], file .. ": link to a missing page " .. href)
                    assert(anchor == "" or anchors[target][anchor],
                        file .. ": link to a missing anchor " .. href)
                    checked = checked + 1
                end
            end
        end
        assert.is_true(checked > 100)
    end)
end)

describe("the lists of operations outside the reference", function()
    local function operation_names()
        local names = {}
        for name in pairs(require "passage.operations") do
            names[#names + 1] = name
        end
        table.sort(names)
        return names
    end

    -- The names in backquotes of the sentence that starts "Every operation
    -- of the API", but `app_id`.
    local function listed_in(path)
        local text = read(path)
        local sentence = assert(text:match("Every operation of the API(.-)%.%s"), path)
        local names = {}
        for name in sentence:gmatch("`([%w_]+)`") do
            if name ~= "app_id" then
                names[#names + 1] = name
            end
        end
        table.sort(names)
        return names
    end

    for _, path in ipairs { "README.md", "docs/guide.md" } do
        it("in " .. path .. " are passage.operations'", function()
            assert.same(operation_names(), listed_in(path))
        end)
    end

    it("in the fuzz harness are passage.operations'", function()
        -- An operation with an argument the harness has no sample for stops
        -- it at load: it read the operation from passage.operations.
        local ops = require "passage.operations"
        ops.zz_probe = { method = "GET", path = "/apps/{app_id}/probe/{probe_id}",
            args = { "app_id", "probe_id" }, result = "user", idempotent = true }
        local ok, err = pcall(dofile, "src/fuzz/fuzz_response.lua")
        ops.zz_probe = nil
        assert.is_false(ok)
        assert.matches("no sample for argument probe_id of zz_probe", err)
    end)
end)
