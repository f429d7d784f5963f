rockspec_format = "3.0"
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
calls in flight on one client, pollable from any host loop); inside nginx's
Lua module (OpenResty) the same client calls over nginx cosockets, without
blocking the worker. passage.paginator
walks every user of an app with one for loop. passage-users is a command
line for user administration built on them. The local Passage emulator for
tests and demos is a rock of its own: passage-emulator (emulator/).
]],
   homepage = "https://github.com/passage-lua/passage-lua",
   license = "MIT",
}
supported_platforms = { "unix" }
-- Offline, against the system's packages (Debian: lua-cjson, lua-argparse,
-- lua-term): luarocks make --deps-mode=none.
dependencies = {
   "lua >= 5.1",
   "lua-cjson >= 2.1.0",
   "argparse >= 0.7",   -- passage-users (Debian: lua-argparse)
   "lua-term >= 0.7",   -- passage-users: is stderr a terminal (Debian: lua-term)
}
-- Probed by library name: the header probe fails on multiarch Debian.
-- rockspec/check_curl_headers.c, compiled first, names the package to
-- install when the headers are missing.
external_dependencies = {
   CURL = { library = "curl" },
}
build = {
   type = "builtin",
   modules = {
      ["passage.core"] = {
         sources = { "rockspec/check_curl_headers.c", "src/core.c", "src/easy_url.c", "src/headers.c", "src/segment.c", "src/json_check.c", "src/json_decode.c", "src/json_number.c", "src/request.c", "src/sockets.c", "src/transport.c" },
         defines = { "PSG_VERSION=\"0.1.0\"", "_POSIX_C_SOURCE=200809L" },
         libraries = { "curl", "pthread", "m" },
         incdirs = { "$(CURL_INCDIR)" },
         libdirs = { "$(CURL_LIBDIR)" },
      },
      ["passage.users"] = "lua/passage/users.lua",
      ["passage.operations"] = "lua/passage/operations.lua",
      ["passage.options"] = "lua/passage/options.lua",
      ["passage.schema"] = "lua/passage/schema.lua",
      ["passage.engine"] = "lua/passage/engine.lua",
      ["passage.errors"] = "lua/passage/errors.lua",
      ["passage.filters"] = "lua/passage/filters.lua",
      ["passage.retry"] = "lua/passage/retry.lua",
      ["passage.url"] = "lua/passage/url.lua",
      ["passage.bulk"] = "lua/passage/bulk.lua",
      ["passage.clock"] = "lua/passage/clock.lua",
      ["passage.paginator"] = "lua/passage/paginator.lua",
      ["passage.cosocket"] = "lua/passage/cosocket.lua",
      ["passage.loop.luv"] = "lua/passage/loop/luv.lua",
      ["passage.loop.cqueues"] = "lua/passage/loop/cqueues.lua",
      ["passage.loop.attach"] = "lua/passage/loop/attach.lua",
      ["passage.cosocket.deadline"] = "lua/passage/cosocket/deadline.lua",
      ["passage.cosocket.http1"] = "lua/passage/cosocket/http1.lua",
      ["passage.cosocket.pool"] = "lua/passage/cosocket/pool.lua",
      ["passage.cosocket.threads"] = "lua/passage/cosocket/threads.lua",
      ["passage.cli.calls"] = "lua/passage/cli/calls.lua",
      ["passage.cli.command_list"] = "lua/passage/cli/command_list.lua",
      ["passage.cli.config"] = "lua/passage/cli/config.lua",
      ["passage.cli.csv"] = "lua/passage/cli/csv.lua",
      ["passage.cli.flags"] = "lua/passage/cli/flags.lua",
      ["passage.cli.input"] = "lua/passage/cli/input.lua",
      ["passage.cli.json"] = "lua/passage/cli/json.lua",
      ["passage.cli.main"] = "lua/passage/cli/main.lua",
      ["passage.cli.output"] = "lua/passage/cli/output.lua",
      ["passage.cli.output_file"] = "lua/passage/cli/output_file.lua",
      ["passage.cli.parser"] = "lua/passage/cli/parser.lua",
      ["passage.cli.progress"] = "lua/passage/cli/progress.lua",
      ["passage.cli.records"] = "lua/passage/cli/records.lua",
      ["passage.cli.restore"] = "lua/passage/cli/restore.lua",
      ["passage.cli.runner"] = "lua/passage/cli/runner.lua",
      ["passage.cli.server_checks"] = "lua/passage/cli/server_checks.lua",
      ["passage.cli.signals"] = "lua/passage/cli/signals.lua",
      ["passage.cli.text"] = "lua/passage/cli/text.lua",
      ["passage.cli.users_format"] = "lua/passage/cli/users_format.lua",
      ["passage.cli.where"] = "lua/passage/cli/where.lua",
      ["passage.cli.commands.change"] = "lua/passage/cli/commands/change.lua",
      ["passage.cli.commands.export"] = "lua/passage/cli/commands/export.lua",
      ["passage.cli.commands.import"] = "lua/passage/cli/commands/import.lua",
      ["passage.cli.commands.list"] = "lua/passage/cli/commands/list.lua",
      ["passage.cli.commands.operation"] = "lua/passage/cli/commands/operation.lua",
      ["passage.cli.commands.user"] = "lua/passage/cli/commands/user.lua",
   },
   install = {
      bin = { ["passage-users"] = "bin/passage-users" },
   },
}
-- `luarocks test`: the specs with busted, through make (it builds the core
-- and sets the paths the specs use; the emulator needs nginx).
test = {
   type = "command",
   command = "make spec",
}
