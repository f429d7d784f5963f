std = "max"
max_line_length = 110
files["spec/"] = { std = "+busted" }
files["emulator/lua/passage/emulator/nginx.lua"] = { globals = { "ngx" } }
exclude_files = { "build/", "luarocks-tree/" }
-- The real hosts' globals, in their examples only.
files["examples/luanti/"] = { read_globals = { "minetest" } }
files["examples/love/"] = { globals = { "love" } }
