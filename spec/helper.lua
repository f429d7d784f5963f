-- busted helper: makes sure the emulator answers before any spec runs, and stops
-- it at the end when this run started it.
local emulator = require("support.emulator")
local busted = require("busted")

emulator.ensure()

-- luv keeps one default loop per process, made when the module first loads.
-- busted unloads what each spec file required; luv loaded again after its
-- first copy was collected finds that loop gone, and crashes. Loaded here,
-- before busted's snapshot, it stays for the whole run.
pcall(require, "luv")
busted.subscribe({ "exit" }, function()
  emulator.stop_if_started()
  return nil, true
end)

-- make spec-gc: every test runs with the collector at its most aggressive (a
-- full cycle, finalizers included, at every allocation; support.gc_torture).
if os.getenv("PASSAGE_GC_TORTURE") then
  local torture = require("support.gc_torture")
  busted.subscribe({ "test", "start" }, function()
    torture.on()
    return nil, true
  end)
  busted.subscribe({ "test", "end" }, function()
    torture.off()
    return nil, true
  end)
end
