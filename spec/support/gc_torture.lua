-- The collector at its most aggressive: a full cycle, finalizers included,
-- at every allocation the VM checks, so every Lua allocation made inside C
-- code (a table while decoding, a string while building an error) can run
-- any finalizer. Specs use it to prove that C code never keeps a pointer
-- across an allocation to something a finalizer could free.
--
--   torture.during(f, ...)   runs f with the collector so, returns its results
--   torture.on() / off()     the same around a longer stretch (make spec-gc)
--   torture.finalizer(f)     garbage at once whose finalizer calls f
local M = {}

-- Lua 5.4 sets its incremental mode's parameters in one call; Lua 5.1 and
-- LuaJIT have only "setpause" and "setstepmul" (and no generational mode).
local HAS_MODES = _VERSION == "Lua 5.4"

local saved_mode, saved_pause, saved_stepmul

-- pause 1%: a new cycle right after the last one; a step size so large that
-- each step runs the cycle to its end.
function M.on()
  if saved_mode ~= nil then
    return
  end
  if HAS_MODES then
    -- step size 2^64 bytes (0 would mean "leave as is")
    saved_mode = collectgarbage("incremental", 1, 1000, 64)
  else
    -- the same through Lua 5.1's two knobs: a step does the multiplier
    -- times 10 units of work (LuaJIT: 1e8 stays within its int32)
    saved_mode = "incremental"
    saved_pause = collectgarbage("setpause", 1)
    saved_stepmul = collectgarbage("setstepmul", 100000000)
    -- LuaJIT's compiled code livelocks in its GC steps when every step is a
    -- whole cycle (a 100-turn loop over pairs() never ends; the interpreter
    -- is fine), and what is tortured here is C code, which the interpreter
    -- calls the same way: so the JIT is off, its traces flushed, meanwhile.
    if jit then -- luacheck: globals jit
      jit.off()
      jit.flush()
    end
  end
  collectgarbage("collect") -- starts counting from a finished cycle
end

function M.off()
  if saved_mode == nil then
    return
  end
  if HAS_MODES then
    collectgarbage("incremental", 200, 100, 13) -- Lua 5.4's defaults
    if saved_mode == "generational" then
      collectgarbage("generational")
    end
  else
    collectgarbage("setpause", saved_pause)
    collectgarbage("setstepmul", saved_stepmul)
    if jit then
      jit.on()
    end
  end
  saved_mode = nil
end

local function finish(ok, ...)
  M.off()
  if not ok then
    error((...), 0)
  end
  return ...
end

function M.during(f, ...)
  local was_on = saved_mode ~= nil
  M.on()
  if was_on then
    return f(...)
  end
  return finish(pcall(f, ...))
end

-- Makes an object that is garbage at once and whose finalizer calls f: the
-- collector runs f at some later allocation (at the next one under
-- torture). Lua 5.1 and LuaJIT run __gc for userdata only, so there the
-- object is a newproxy userdata; elsewhere a table.
function M.finalizer(f)
  if newproxy then -- luacheck: globals newproxy (Lua 5.1, LuaJIT)
    getmetatable(newproxy(true)).__gc = function()
      f()
    end
  else
    setmetatable({}, { __gc = function()
      f()
    end })
  end
end

return M
