-- busted helper: makes sure the emulator answers before any spec runs, and stops
-- it at the end when this run started it.
local emulator = require("support.emulator")
local busted = require("busted")

emulator.ensure()
busted.subscribe({ "exit" }, function()
  emulator.stop_if_started()
  return nil, true
end)
