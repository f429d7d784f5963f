-- The library's clock: milliseconds of the monotonic clock that the C
-- core's deadlines use (core.now_ms), as one function, now_ms().
--
-- On LuaJIT the same clock is read through the FFI: compiled code calls
-- an FFI function inside its trace, where a call of a Lua C function ends
-- the trace and costs more than the reading itself (a blocking call reads
-- the clock twice). It is used only where it provably reads the C core's
-- clock: a 64-bit POSIX system, the FFI declarations accepted, and a first
-- reading between two of core.now_ms; anywhere else, core.now_ms.
local core = require "passage.core"

local function ffi_clock()
    local ok, ffi = pcall(require, "ffi")
    if not ok or not ffi.abi("64bit") or ffi.os == "Windows" or not core.CLOCK_MONOTONIC then
        return nil
    end
    -- Names of our own, clock_gettime bound through asm(): the FFI's
    -- declarations are shared by the whole process, and a host (a game, a
    -- mod) may declare clock_gettime with a struct of its own.
    local declared = pcall(ffi.cdef, [[
        typedef struct { long sec; long nsec; } passage_clock_timespec;
        int passage_clock_gettime(int clock_id, passage_clock_timespec *tp)
            asm("clock_gettime");
    ]])
    if not declared then
        return nil
    end
    local found, clock_gettime = pcall(function()
        return ffi.C.passage_clock_gettime
    end)
    if not found then
        return nil
    end
    local ts = ffi.new("passage_clock_timespec")
    local clock_id = core.CLOCK_MONOTONIC
    -- The C core's formula, so both give the same number for one instant.
    local function now_ms()
        clock_gettime(clock_id, ts)
        return tonumber(ts.sec) * 1000.0 + tonumber(ts.nsec) / 1e6
    end
    local before = core.now_ms()
    local reading = now_ms()
    local after = core.now_ms()
    if not (before <= reading and reading <= after) then
        return nil
    end
    return now_ms
end

return { now_ms = ffi_clock() or core.now_ms }
