package = "passage-lua"
version = "0.1.0-1"
source = {
   url = "git+https://github.com/passage-lua/passage-lua.git",
   tag = "v0.1.0",
}
description = {
   summary = "Passage Management API v1 (users) for Lua: a libcurl C core, native tables",
   detailed = [[
passage.users calls every user operation of the Passage Management API v1
over libcurl and returns native Lua tables, blocking or concurrently (many
calls in flight on one client, pollable from any host loop). passage.paginator
walks every user of an app with one for loop. The local Passage emulator
for tests and demos is a rock of its own: passage-emulator (emulator/).
]],
   homepage = "https://github.com/passage-lua/passage-lua",
   license = "MIT",
}
dependencies = {
   "lua >= 5.1",
   "lua-cjson >= 2.1.0",
}
-- Probed by library name: the header probe fails on multiarch Debian.
external_dependencies = {
   CURL = { library = "curl" },
}
build = {
   type = "builtin",
   modules = {
      ["passage.core"] = {
         sources = { "src/core.c", "src/json_check.c", "src/json_decode.c", "src/request.c", "src/transport.c" },
         defines = { "PSG_VERSION=\"0.1.0\"", "_POSIX_C_SOURCE=200809L" },
         libraries = { "curl", "pthread", "m" },
         incdirs = { "$(CURL_INCDIR)" },
         libdirs = { "$(CURL_LIBDIR)" },
      },
      ["passage.users"] = "lua/passage/users.lua",
      ["passage.engine"] = "lua/passage/engine.lua",
      ["passage.errors"] = "lua/passage/errors.lua",
      ["passage.filters"] = "lua/passage/filters.lua",
      ["passage.retry"] = "lua/passage/retry.lua",
      ["passage.url"] = "lua/passage/url.lua",
      ["passage.bulk"] = "lua/passage/bulk.lua",
      ["passage.paginator"] = "lua/passage/paginator.lua",
      ["passage.openresty"] = "lua/passage/openresty.lua",
   },
}
