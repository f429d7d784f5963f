-- The collector at its most aggressive: a full cycle, finalizers included,
-- at every allocation the VM checks (Lua 5.4), so every Lua allocation made
-- inside C code (a table while decoding, a string while building an error)
-- can run any finalizer. Specs use it to prove that C code never keeps a
-- pointer across an allocation to something a finalizer could free.
--
--   torture.during(f, ...)   runs f with the collector so, returns its results
--   torture.on() / off()     the same around a longer stretch (make spec-gc)
local M = {}

local saved_mode

-- pause 1%: a new cycle right after the last one; step size 2^64 bytes: each
-- step runs the cycle to its end. (0 would mean "leave as is".)
function M.on()
  if saved_mode == nil then
    saved_mode = collectgarbage("incremental", 1, 1000, 64)
    collectgarbage("collect") -- starts counting from a finished cycle
  end
end

function M.off()
  if saved_mode ~= nil then
    collectgarbage("incremental", 200, 100, 13) -- Lua 5.4's defaults
    if saved_mode == "generational" then
      collectgarbage("generational")
    end
    saved_mode = nil
  end
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

return M
