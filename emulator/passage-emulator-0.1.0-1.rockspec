-- Built from this directory (`cd emulator && luarocks make`): luarocks copies
-- the lua/ directory of the directory it builds in, so building from the
-- repository root would install the library's modules as well.
package = "passage-emulator"
version = "0.1.0-1"
source = {
   url = "git+https://github.com/passage-lua/passage-lua.git",
   tag = "v0.1.0",
   dir = "passage-lua/emulator",
}
description = {
   summary = "A local Passage Management API v1 (users) emulator on nginx + Lua, for tests",
   detailed = [[
A stateful stand-in for the Passage Management API v1 users endpoints
(create, get, update, delete, activate, deactivate, list with filters and
paging, devices, tokens), with an admin API for apps, seeding, fault
injection and statistics. The passage-emulator command starts and stops it:
  passage-emulator start|stop|status [--port N] [--prefix DIR]
  passage-emulator run [--port N] -- COMMAND ...
Needs nginx with its Lua module and lua-cjson for LuaJIT (Debian:
nginx-light libnginx-mod-http-lua lua-resty-core lua-cjson).
]],
   homepage = "https://github.com/passage-lua/passage-lua",
   license = "MIT",
}
dependencies = {
   "lua >= 5.1",
}
build = {
   type = "builtin",
   modules = {
      ["passage.emulator.cli"] = "lua/passage/emulator/cli.lua",
      ["passage.emulator.control"] = "lua/passage/emulator/control.lua",
      ["passage.emulator.faults"] = "lua/passage/emulator/faults.lua",
      ["passage.emulator.handler"] = "lua/passage/emulator/handler.lua",
      ["passage.emulator.json"] = "lua/passage/emulator/json.lua",
      ["passage.emulator.launcher"] = "lua/passage/emulator/launcher.lua",
      ["passage.emulator.listing"] = "lua/passage/emulator/listing.lua",
      ["passage.emulator.nginx"] = "lua/passage/emulator/nginx.lua",
      ["passage.emulator.render"] = "lua/passage/emulator/render.lua",
      ["passage.emulator.reply"] = "lua/passage/emulator/reply.lua",
      ["passage.emulator.rng"] = "lua/passage/emulator/rng.lua",
      ["passage.emulator.routes"] = "lua/passage/emulator/routes.lua",
      ["passage.emulator.seed"] = "lua/passage/emulator/seed.lua",
      ["passage.emulator.store"] = "lua/passage/emulator/store.lua",
      ["passage.emulator.timestamp"] = "lua/passage/emulator/timestamp.lua",
      ["passage.emulator.url"] = "lua/passage/emulator/url.lua",
      ["passage.emulator.validate"] = "lua/passage/emulator/validate.lua",
   },
   install = {
      bin = { ["passage-emulator"] = "bin/passage-emulator" },
   },
}
