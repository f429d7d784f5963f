-- The strict JSON decoder of passage.core (src/json_decode.c).
--
-- Runs every file of JSONTestSuite's test_parsing directory, then the rules
-- the client relies on, then a differential check against a private
-- lua-cjson instance over generated documents and realistic API bodies.
local files = require("support.files")
local core = require("passage.core")
local compare = require("support.json_compare")
local torture = require("support.gc_torture")

package.path = "bench/?.lua;" .. package.path
local fixtures = require("fixtures")

local math_type = compare.math_type
local HAS_INTEGERS = math.type ~= nil and math.type(1) == "integer"

local function decode(s, opts)
  local d = core.decoder(opts)
  local v, msg, off = d:decode(s)
  d:close()
  return v, msg, off
end

-- An error must name a byte offset that lies inside (or just past) the
-- document, and the third result must be that same offset.
local function assert_error(s, pattern, opts)
  local v, msg, off = decode(s, opts)
  assert.is_nil(v, "accepted " .. string.format("%q", s))
  assert.is_string(msg)
  assert.is_number(off)
  if msg ~= "empty document" then
    local named = tonumber(msg:match(" at byte (%d+)$"))
    assert.is_not_nil(named, "no byte offset in: " .. msg)
    assert.are.equal(named, off)
  end
  assert.is_true(off >= 0 and off <= #s, "offset out of range: " .. off)
  if pattern then
    assert.are.equal(pattern, msg)
  end
  return msg, off
end

-- ---- JSONTestSuite ----------------------------------------------------------

local function is_dir(path)
  local ok, lfs = pcall(require, "lfs")
  if ok then
    return lfs.attributes(path, "mode") == "directory"
  end
  local f = io.open(path .. "/.")
  if f then
    f:close()
    return true
  end
  return false
end

-- The suite is kept in the repository (spec/fixtures/json-test-suite, MIT),
-- unless PASSAGE_JSON_TEST_SUITE names another copy (the suite root or its
-- test_parsing directory).
local function find_suite()
  local env = os.getenv("PASSAGE_JSON_TEST_SUITE")
  local candidates = { env, "spec/fixtures/json-test-suite" }
  for i = 1, 2 do
    local dir = candidates[i]
    if dir and dir ~= "" then
      if is_dir(dir .. "/test_parsing") then
        return dir .. "/test_parsing"
      elseif is_dir(dir) then
        return dir
      end
    end
  end
  return nil
end

local function list_json(dir)
  local names = {}
  local ok, lfs = pcall(require, "lfs")
  if ok then
    for name in lfs.dir(dir) do
      if name:match("%.json$") then
        names[#names + 1] = name
      end
    end
  else
    local p = assert(io.popen('ls -1 "' .. dir .. '"'))
    for name in p:lines() do
      if name:match("%.json$") then
        names[#names + 1] = name
      end
    end
    p:close()
  end
  table.sort(names)
  return names
end

local function read_file(path)
  return assert(files.read(path))
end

describe("JSONTestSuite test_parsing", function()
  local dir = find_suite()

  it("is present (set PASSAGE_JSON_TEST_SUITE to its location)", function()
    assert.is_not_nil(dir, "JSONTestSuite not found at spec/fixtures/json-test-suite")
  end)
  if not dir then
    return
  end

  local names = list_json(dir)
  local counts = { y = 0, n = 0, i = 0, i_accepted = 0, i_rejected = 0 }
  local implementation_defined = {}

  for _, name in ipairs(names) do
    local kind = name:sub(1, 1)
    it(name, function()
      local doc = read_file(dir .. "/" .. name)
      if kind == "y" then
        local v, msg = decode(doc)
        assert.is_nil(msg, name .. ": " .. tostring(msg))
        assert.is_not_nil(v)
      elseif kind == "n" then
        assert_error(doc)
      else
        local ok, v, msg = pcall(decode, doc)
        assert.is_true(ok, tostring(v)) -- a Lua error is not an answer
        if v ~= nil then
          counts.i_accepted = counts.i_accepted + 1
          implementation_defined[#implementation_defined + 1] = "  accept " .. name
        else
          counts.i_rejected = counts.i_rejected + 1
          implementation_defined[#implementation_defined + 1] = "  reject " .. name .. ": " .. msg
        end
      end
      counts[kind] = counts[kind] + 1
    end)
  end

  it("covers every file", function()
    assert.is_true(#names >= 300, "only " .. #names .. " files in " .. dir)
    io.stderr:write(string.format(
      "\nJSONTestSuite: %d y_ accepted, %d n_ rejected, %d i_ (%d accepted, %d rejected)\n",
      counts.y, counts.n, counts.i, counts.i_accepted, counts.i_rejected))
    if os.getenv("PASSAGE_JSON_VERBOSE") then
      io.stderr:write(table.concat(implementation_defined, "\n"), "\n")
    end
  end)
end)

-- ---- numbers ------------------------------------------------------------------

describe("numbers", function()
  it("are integers when written as integers (5.3+), doubles on Lua 5.1 and LuaJIT", function()
    local v = decode("[0, 1, -1, 42, 9223372036854775807, -9223372036854775808]")
    assert.are.same({ 0, 1, -1, 42 }, { v[1], v[2], v[3], v[4] })
    if HAS_INTEGERS then
      for i = 1, #v do
        assert.are.equal("integer", math.type(v[i]))
      end
      assert.are.equal(math.maxinteger, v[5])
      assert.are.equal(math.mininteger, v[6])
    else
      -- Every number is a double: exact up to 2^53, the nearest double beyond.
      assert.are.equal(2 ^ 63, v[5])
      assert.are.equal(-(2 ^ 63), v[6])
      assert.are.equal(2 ^ 53, decode("9007199254740992"))
      assert.are.equal(2 ^ 53, decode("9007199254740993"))
      assert.are.equal(2 ^ 53 + 2, decode("9007199254740994"))
      assert.are.equal(-(2 ^ 53) - 2, decode("-9007199254740994"))
    end
  end)

  it("are floats with a fraction or an exponent", function()
    local v = decode("[1.0, 1e2, 1E+2, 2.5, -0.5, 1e-2]")
    assert.are.same({ 1, 100, 100, 2.5, -0.5, 0.01 }, { v[1], v[2], v[3], v[4], v[5], v[6] })
    if HAS_INTEGERS then
      for i = 1, #v do
        assert.are.equal("float", math.type(v[i]))
      end
    end
  end)

  it("become floats beyond the integer range", function()
    local v = decode("[9223372036854775808, -9223372036854775809, 123456789012345678901234567890]")
    assert.are.equal(2 ^ 63, v[1])
    assert.are.equal(-(2 ^ 63), v[2])
    assert.are.equal(1.2345678901234568e29, v[3])
    if HAS_INTEGERS then
      assert.are.equal("float", math.type(v[1]))
      assert.are.equal("float", math.type(v[2]))
    end
  end)

  it("keep the sign of -0 (as a float)", function()
    for _, s in ipairs({ "-0", "-0.0", "-0e5" }) do
      local v = decode(s)
      assert.are.equal(0, v)
      assert.are.equal(-math.huge, 1 / v)
      assert.are.equal("float", math_type(v))
    end
    assert.are.equal(math.huge, 1 / decode("0.0"))
  end)

  it("handle exponents, underflow and overflow", function()
    assert.are.equal(1.5e300, decode("1.5e300"))
    assert.are.equal(1.5e-300, decode("15E-301"))
    assert.are.equal(0, decode("1e-400"))
    assert.are.equal(0, decode("0e999999999999999999"))
    assert.are.equal(4.9406564584124654e-324, decode("4.9406564584124654e-324"))
    assert_error("1e400", "number out of range at byte 0")
    assert_error("[-1e400]", "number out of range at byte 1")
  end)

  it("are correctly rounded", function()
    local cases = {
      "0.1", "0.3", "2.2250738585072011e-308", "2.2250738585072014e-308", "1.7976931348623157e308",
      "9007199254740993", "9007199254740993.0", "123456789012345678901234567890e-10",
      "3.14159265358979323846264338327950288", "1.00000000000000011102230246251565404236316680908203125",
      "0.000000000000000000000000000000000000000000001", "7.038531e-26", "1e23", "8.41e21",
      "5e-324", "123.456e-2", "1.2345678901234567e-5", "100000000000000000000000",
    }
    for _, s in ipairs(cases) do
      local expected = tonumber(s)
      if HAS_INTEGERS and math.type(expected) == "integer" then
        expected = expected + 0.0
      end
      assert.are.equal(expected, decode(s) + 0.0, s)
    end
  end)

  it("do not depend on the C locale", function()
    local doc = "[1.5, 0.25e1, 3.14159265358979323846, 1234567890.12345678901, 2e-1]"
    local expected = decode(doc)
    local old = os.setlocale(nil, "numeric")
    local used
    for _, name in ipairs({ "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "C.UTF-8" }) do
      if os.setlocale(name, "numeric") then
        used = name
        break
      end
    end
    if not used then
      return pending("no locale to switch to")
    end
    local ok, v = pcall(decode, doc)
    os.setlocale(old, "numeric")
    assert.is_true(ok, v)
    assert.are.same(expected, v)
    assert.are.equal(1.5, v[1])
    assert.are.equal(2.5, v[2])
  end)

  it("reject what JSON does not allow", function()
    assert_error("01", "invalid number (leading zero) at byte 1")
    assert_error("[-012]", "invalid number (leading zero) at byte 3")
    assert_error("[1.]", "invalid number at byte 3")
    assert_error("[1.e5]", "invalid number at byte 3")
    assert_error("[1ea]", "invalid number at byte 3")
    assert_error("[-a]", "invalid number at byte 2")
    assert_error("[.5]", "unexpected character '.' at byte 1")
    assert_error("-", "invalid number at byte 1")
    assert_error("1e", "invalid number at byte 2")
    assert_error("+1", "unexpected character '+' at byte 0")
    assert_error("0x10", "trailing garbage at byte 1")
    assert_error("[NaN]", "unexpected character 'N' at byte 1")
  end)
end)

-- ---- strings --------------------------------------------------------------------

describe("strings", function()
  it("decode every escape", function()
    assert.are.equal('"\\/\b\f\n\r\t', decode([["\"\\\/\b\f\n\r\t"]]))
    assert.are.equal("a\0b", decode([["a\u0000b"]]))
    assert.are.equal("\194\169\226\130\172", decode([["\u00a9\u20AC"]]))
  end)

  it("join surrogate pairs into UTF-8", function()
    assert.are.equal("\240\159\152\128", decode([["\ud83d\ude00"]]))
    assert.are.equal("x\244\143\191\191y", decode([["x\uDBFF\uDFFFy"]]))
  end)

  it("reject unpaired surrogates", function()
    assert_error([["\ud83d"]], "unpaired surrogate escape at byte 1")
    assert_error([["ab\ude00"]], "unpaired surrogate escape at byte 3")
    assert_error([["\ud83dx"]], "unpaired surrogate escape at byte 1")
    assert_error([["\ud83d\ud83d"]], "unpaired surrogate escape at byte 1")
    assert_error([["\ud83d\u0041"]], "unpaired surrogate escape at byte 1")
  end)

  it("reject bad escapes", function()
    assert_error([["\x41"]], "invalid escape at byte 1")
    assert_error([["\u12"]], "invalid \\u escape at byte 1")
    assert_error([["\u12G4"]], "invalid \\u escape at byte 1")
    assert_error('"abc\\', "unterminated string at byte 0")
  end)

  it("pass valid UTF-8 through", function()
    local s = "caf\195\169 \226\130\172 \240\159\152\128 \239\191\191 \244\143\191\191"
    assert.are.equal(s, decode('"' .. s .. '"'))
    assert.are.equal(s .. "\n", decode('"' .. s .. '\\n"'))
  end)

  it("reject invalid UTF-8", function()
    local bad = {
      "\192\128", -- overlong NUL
      "\193\191", -- overlong
      "\224\128\128", -- overlong 3-byte
      "\240\128\128\128", -- overlong 4-byte
      "\237\160\128", -- UTF-16 surrogate D800
      "\237\191\191", -- surrogate DFFF
      "\244\144\128\128", -- above U+10FFFF
      "\245\128\128\128", -- lead byte beyond F4
      "\255",
      "\128", -- stray continuation
      "\226\130", -- truncated
      "\240\159\152", -- truncated
    }
    for _, b in ipairs(bad) do
      assert_error('["ab' .. b .. '"]', "invalid UTF-8 at byte 4")
      assert_error('["a\\n' .. b .. '"]', "invalid UTF-8 at byte 5")
    end
    assert_error('"\226\130', "invalid UTF-8 at byte 1")
  end)

  it("reject unescaped control characters", function()
    assert_error('["a\tb"]', "unescaped control character in string at byte 3")
    assert_error('"a\\tb\n"', "unescaped control character in string at byte 5")
    assert_error('"\0"', "unescaped control character in string at byte 1")
  end)

  it("report unterminated strings at their opening quote", function()
    assert_error('[1,"abc', "unterminated string at byte 3")
    assert_error('{"a', "unterminated string at byte 1")
  end)

  it("survive long strings with escapes", function()
    local body = string.rep("x\\n\\u00e9", 50000)
    local want = string.rep("x\n\195\169", 50000)
    local d = core.decoder()
    for _ = 1, 2 do
      assert.are.equal(want, d:decode('"' .. body .. '"'))
      assert.are.equal("short\n", d:decode('"short\\n"'))
    end
    d:close()
  end)
end)

-- ---- null, arrays, objects ----------------------------------------------------

describe("null", function()
  it("is the lightuserdata NULL shared with cjson", function()
    assert.are.equal("userdata", type(core.null))
    assert.are.equal(require("cjson").null, core.null)
  end)

  it("leaves object members absent by default", function()
    local v = decode('{"a":null,"b":1,"c":{"d":null}}')
    assert.is_nil(v.a)
    assert.are.equal(1, v.b)
    assert.is_nil(next(v.c))
    assert.is_nil(next(decode('{"a":null}')))
  end)

  it("is the sentinel in objects with keep_null", function()
    local v = decode('{"a":null,"b":{"c":null}}', { keep_null = true })
    assert.are.equal(core.null, v.a)
    assert.are.equal(core.null, v.b.c)
  end)

  it("is always the sentinel in arrays and at top level", function()
    for _, keep in ipairs({ false, true }) do
      local v = decode("[null,1,null]", { keep_null = keep })
      assert.are.equal(3, #v)
      assert.are.equal(core.null, v[1])
      assert.are.equal(core.null, v[3])
      assert.are.equal(core.null, decode(" null ", { keep_null = keep }))
    end
  end)
end)

describe("tables", function()
  it("mark arrays with the shared metatable and objects with none", function()
    assert.are.equal("table", type(core.array_mt))
    local v = decode('{"a":[],"o":{},"n":[[1],{"x":[]}]}')
    assert.are.equal(core.array_mt, getmetatable(v.a))
    assert.is_nil(next(v.a))
    assert.is_nil(getmetatable(v.o))
    assert.is_nil(next(v.o))
    assert.is_nil(getmetatable(v))
    assert.are.equal(core.array_mt, getmetatable(v.n))
    assert.are.equal(core.array_mt, getmetatable(v.n[1]))
    assert.is_nil(getmetatable(v.n[2]))
    assert.are.equal(core.array_mt, getmetatable(v.n[2].x))
    assert.are.equal(core.array_mt, getmetatable(decode("[]")))
  end)

  it("let the last of duplicate keys win", function()
    assert.are.same({ a = 3 }, decode('{"a":1,"a":2,"a":3}'))
    assert.are.same({}, decode('{"a":1,"a":null}'))
    assert.are.same({ a = core.null }, decode('{"a":1,"a":null}', { keep_null = true }))
    assert.are.same({ a = 2 }, decode('{"a":null,"a":2}'))
  end)

  it("are sized from earlier tables without mixing up shapes", function()
    local d = core.decoder()
    local page = fixtures.page(50)
    local first = d:decode(page)
    for _ = 1, 3 do
      assert.are.same(first, d:decode(page))
      local small = d:decode('{"users":[{"id":"x"}],"_links":{}}')
      assert.are.same({ users = { { id = "x" } }, _links = {} }, small)
    end
    d:close()
  end)

  -- A decoder remembers the keys it made, by position and order, for the
  -- next document: a key is reused only when the bytes are the same.
  it("get their keys right when a decoder remembers them across documents", function()
    local d = core.decoder()
    local long = string.rep("k", 100)
    local cases = {
      { '{"abcd":1,"n":{"xy":1}}', { abcd = 1, n = { xy = 1 } } },
      { '{"abce":2,"n":{"xy":2}}', { abce = 2, n = { xy = 2 } } }, -- same length
      { '{"abc":3,"n":{"xyz":3}}', { abc = 3, n = { xyz = 3 } } }, -- a prefix
      { '{"abcde":4,"n":{"x":4}}', { abcde = 4, n = { x = 4 } } }, -- longer
      { '{"a\\u0062cd":5,"n":{}}', { abcd = 5, n = {} } }, -- escaped
      { '{"abcd":6,"n":{"\\u00e9":6}}', { abcd = 6, n = { ["\195\169"] = 6 } } },
      { '{"' .. long .. '":7}', { [long] = 7 } }, -- too long to keep
      { '{"' .. long .. '":8}', { [long] = 8 } },
      { '{"abcd":9,"n":{"xy":9}}', { abcd = 9, n = { xy = 9 } } },
    }
    for round = 1, 2 do
      for i, case in ipairs(cases) do
        assert.are.same(case[2], d:decode(case[1]), "round " .. round .. ", document " .. i)
        collectgarbage() -- the remembered keys stay alive
      end
    end
    d:close()
  end)
end)

-- ---- structure and errors -----------------------------------------------------

describe("documents", function()
  it("accept surrounding whitespace only", function()
    assert.are.same({ 1 }, decode(" \t\r\n[1] \n"))
    assert_error("[1] x", "trailing garbage at byte 4")
    assert_error("[1,2,3]x", "trailing garbage at byte 7")
    assert_error('{"a":1}{}', "trailing garbage at byte 7")
  end)

  it("reject empty input and a byte order mark", function()
    assert_error("", "empty document")
    assert_error(" \n ", "empty document")
    assert_error("\239\187\191{}", "byte order mark not allowed at byte 0")
  end)

  it("name the offending byte", function()
    assert_error('{"a":1,"b":2,}', "unexpected character '}' at byte 13")
    assert_error('{"id": 12 }}', "trailing garbage at byte 11")
    assert_error("[1,2", "unexpected end of input at byte 4")
    assert_error("[1 2]", "unexpected character '2' at byte 3")
    assert_error('{"a" 1}', "unexpected character '1' at byte 5")
    assert_error("{1:2}", "unexpected character '1' at byte 1")
    assert_error("[tru]", "unexpected character ']' at byte 4")
    assert_error("[nul", "unexpected end of input at byte 4")
    assert_error("[\1]", "unexpected byte 0x01 at byte 1")
    assert_error("'a'", "unexpected character ''' at byte 0")
  end)

  it("limit nesting to max_depth (128 by default)", function()
    local ok = string.rep("[", 128) .. string.rep("]", 128)
    assert.is_not_nil(decode(ok))
    assert_error(string.rep("[", 129) .. string.rep("]", 129), "nesting deeper than 128 at byte 128")
    assert_error(string.rep('{"a":', 129) .. "1" .. string.rep("}", 129),
      "nesting deeper than 128 at byte 640")
    assert_error("[[[1]]]", "nesting deeper than 2 at byte 2", { max_depth = 2 })
    assert.is_not_nil(decode("[[1]]", { max_depth = 2 }))
    assert_error(string.rep("[", 1000000), "nesting deeper than 128 at byte 128")
    local deep = string.rep("[", 4096) .. string.rep("]", 4096)
    assert.is_not_nil(decode(deep, { max_depth = 4096 }))
  end)

  it("leave the Lua stack as it was on error", function()
    local d = core.decoder()
    for _ = 1, 100 do
      local a, b, c = d:decode('{"a":[1,2,{"b":"x"')
      assert.is_nil(a)
      assert.are.equal("unexpected end of input at byte 18", b)
      assert.are.equal(18, c)
      assert.are.equal(4, select("#", 1, d:decode('{"a":[1,2,{"b":"x"')))
    end
    assert.are.same({ 1 }, d:decode("[1]"))
    d:close()
  end)
end)

-- ---- the Lua binding ------------------------------------------------------------

describe("core.decoder", function()
  it("validates its options", function()
    assert.has_error(function()
      core.decoder({ keepnull = true })
    end, "unknown decoder option 'keepnull'")
    assert.has_error(function()
      core.decoder({ keep_null = 1 })
    end, "decoder option 'keep_null' must be a boolean")
    for _, bad in ipairs({ 0, -1, 1.5, 4097, "8" }) do
      assert.has_error(function()
        core.decoder({ max_depth = bad })
      end, "decoder option 'max_depth' must be a whole number from 1 to 4096")
    end
    assert.has_error(function()
      core.decoder("yes")
    end)
    assert.is_not_nil(core.decoder({}))
    assert.is_not_nil(core.decoder())
  end)

  it("runs a checker on the values at its path while decoding", function()
    local d = core.decoder()
    local check = core.checker({ id = "string", n = "number?" }, { "users", "[]" })
    local v, checked = d:decode('{"users":[{"id":"a","n":1},{"id":"b"}]}', check)
    assert.are.equal("b", v.users[2].id)
    assert.is_true(checked)
    v, checked = d:decode('{"users":[{"id":"a"},{"id":7}]}', check)
    assert.are.equal(7, v.users[2].id)
    assert.is_false(checked)
    assert.are.equal(1, select("#", d:decode("[1]")))
  end)

  it("tells an array from an object for an \"array\" field, while decoding and after", function()
    local d = core.decoder()
    local inline = core.checker({ list = "array", opt = "array?" }, { "page" })
    local after = core.checker({ list = "array", opt = "array?" })
    for doc, ok in pairs({
      ['{"page":{"list":[1]}}'] = true, ['{"page":{"list":[]}}'] = true,
      ['{"page":{"list":[],"opt":null}}'] = true, ['{"page":{"list":{}}}'] = false,
      ['{"page":{"list":{"a":1}}}'] = false, ['{"page":{"list":[],"opt":{}}}'] = false,
      ['{"page":{"list":"x"}}'] = false,
    }) do
      local v, checked = d:decode(doc, inline)
      assert.are.equal(ok, checked, doc)
      assert.are.equal(ok, after(v.page), doc)
    end
    assert.is_false(after({ list = {} }), "a table the decoder did not make")
  end)

  it("survives a finalizer that closes it in the middle of a decode", function()
    local d = core.decoder()
    local doc = fixtures.page(200)
    local v, state = torture.during(function()
      -- Garbage at once: the collector, running at every allocation, calls
      -- it in the middle of the decode.
      torture.finalizer(function() d:close() end)
      return d:decode(doc), tostring(d)
    end)
    assert.are.equal("passage.decoder (closed)", state)
    assert.are.equal(200, #v.users)
    assert.has_error(function()
      d:decode("[1]")
    end, "attempt to use a closed passage.decoder")
  end)

  -- A raise inside a decode (out of memory, say) goes on up and leaves the
  -- decoder whole. Made here by decoding with the stack nearly spent.
  it("decodes again after a raise inside a decode", function()
    local d = core.decoder()
    local doc = fixtures.page(3)
    local stack_edge = require("support.stack_edge")
    local raised = 0
    for depth in stack_edge.depths() do
      local ran, v = stack_edge.nested(depth, d.decode, d, doc)
      if ran == true and type(v) == "table" then
        break
      end
      if ran ~= true and tostring(ran):find("overflow") then
        raised = raised + 1
        assert.are.equal(3, #d:decode(doc).users, "depth " .. depth)
      end
    end
    assert.is_true(raised > 0, "no nesting made a decode raise")
  end)

  it("decodes strings only", function()
    local d = core.decoder()
    assert.has_error(function()
      d:decode(12)
    end)
    assert.has_error(function()
      d.decode({}, "1")
    end)
  end)

  it("refuses calls once closed", function()
    local d = core.decoder()
    assert.matches("^passage%.decoder %(", tostring(d))
    d:close()
    d:close()
    assert.are.equal("passage.decoder (closed)", tostring(d))
    assert.has_error(function()
      d:decode("1")
    end, "attempt to use a closed passage.decoder")
  end)

  it("closes as a to-be-closed variable (5.4), by its finalizer everywhere", function()
    local collected = core.decoder()
    getmetatable(collected).__gc(collected) -- what the collector runs
    assert.are.equal("passage.decoder (closed)", tostring(collected))
    if _VERSION ~= "Lua 5.4" then
      -- No to-be-closed variables before 5.4: close() or the finalizer it is.
      assert.is_nil(load("local d <close> = nil"))
      return
    end
    local chunk = assert(load([[
      local core = ...
      local keep
      do
        local d <close> = core.decoder()
        keep = d
        assert(d:decode("[1]")[1] == 1)
      end
      return tostring(keep)
    ]]))
    assert.are.equal("passage.decoder (closed)", chunk(core))
  end)
end)

-- ---- against lua-cjson ------------------------------------------------------------

describe("compared with lua-cjson", function()
  local cjson = require("cjson").new() -- private: settings never leak out
  if cjson.decode_invalid_numbers then
    cjson.decode_invalid_numbers(false)
  end
  local ours = core.decoder({ keep_null = true })

  local function check(doc)
    local a, msg = ours:decode(doc)
    local ok, b = pcall(cjson.decode, doc)
    if a ~= nil and ok then
      local same, where = compare.diff(a, b)
      assert.is_true(same, (where or "") .. "\nin: " .. doc)
      return "both"
    end
    return a ~= nil and "ours" or (ok and "cjson" or "neither"), msg
  end

  it("agree on generated documents", function()
    local both, only_cjson = 0, 0
    for seed = 1, 3000 do
      local r = compare.rng(seed)
      local doc = compare.gen_document(r)
      local outcome, msg = check(doc)
      if outcome == "both" then
        both = both + 1
      elseif outcome == "cjson" then
        -- the only valid JSON we refuse: numbers beyond the double range
        assert.is_truthy(msg:match("^number out of range at byte %d+$"), doc)
        only_cjson = only_cjson + 1
      else
        error(outcome .. " for valid JSON: " .. doc .. " (" .. tostring(msg) .. ")")
      end
    end
    assert.is_true(both > 2900, both .. " of 3000 compared")
  end)

  it("agree on numbers of every shape", function()
    for seed = 1, 5000 do
      local r = compare.rng(seed * 7919)
      local doc = "[" .. compare.gen_number(r) .. "]"
      local outcome, msg = check(doc)
      assert.is_true(outcome == "both" or (msg or ""):match("^number out of range") ~= nil, doc)
    end
  end)

  it("agree on a page of 500 users and on a full user", function()
    for _, doc in ipairs({ fixtures.page(500), fixtures.user() }) do
      assert.are.equal("both", check(doc))
    end
    local page = core.decoder():decode(fixtures.page(500))
    assert.are.equal(500, #page.users)
    assert.are.equal(core.array_mt, getmetatable(page.users))
    local absent = 0
    for _, u in ipairs(page.users) do
      if u.user_metadata == nil then
        absent = absent + 1
      end
      if HAS_INTEGERS then
        assert.are.equal("integer", math.type(u.login_count))
      end
    end
    assert.is_true(absent > 0, "some users have null metadata")
  end)
end)
