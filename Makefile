# passage-lua: build, run the demo, test.
#   make demo   starts the embedded emulator, runs examples/admin.lua, stops it
#   make test   installs what is missing, builds, lints, runs every spec
#   make bench  decoder and call benchmarks against the emulator (BENCH_PORT)
# Both install their missing Debian packages first (apt-get; root or sudo).

SHELL        := /bin/bash
VERSION      := 0.1.0
LUA_VERSION  ?= 5.4
BUILD        := build
PORT         ?= $(or $(PASSAGE_EMULATOR_PORT),8787)
export PASSAGE_EMULATOR_PORT := $(PORT)

# Headers and interpreter per Lua flavour; LUA_VERSION=jit builds for LuaJIT.
LUA_INC_5.1  := /usr/include/lua5.1
LUA_INC_5.3  := /usr/include/lua5.3
LUA_INC_5.4  := /usr/include/lua5.4
LUA_INC_jit  := /usr/include/luajit-2.1
LUA_BIN_5.1  := lua5.1
LUA_BIN_5.3  := lua5.3
LUA_BIN_5.4  := lua5.4
LUA_BIN_jit  := luajit
LUA_INC      := $(LUA_INC_$(LUA_VERSION))
LUA          := $(LUA_BIN_$(LUA_VERSION))

CC           ?= cc
WARN         := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
OPT          ?= -O2 -g
CFLAGS_ALL   := -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC $(WARN) $(OPT) -I$(LUA_INC) $(EXTRA_CFLAGS)
LDFLAGS_ALL  := -shared $(EXTRA_LDFLAGS)
LIBS         := -lcurl -lpthread -lm

OUT          := $(BUILD)/$(LUA_VERSION)
CORE_SO      := $(OUT)/passage/core.so
SRCS         := $(wildcard src/*.c)
OBJS         := $(patsubst src/%.c,$(OUT)/obj/%.o,$(SRCS))
HDRS         := $(wildcard src/*.h)

# Where specs, the demo and benchmarks find the modules of this checkout.
LUA_ENV      := LUA_PATH='lua/?.lua;lua/?/init.lua;spec/?.lua;;' LUA_CPATH='$(OUT)/?.so;;'

DEB_PACKAGES := lua5.4 liblua5.4-dev libcurl4-openssl-dev lua-cjson lua-busted luarocks \
                lua-check nginx-light libnginx-mod-http-lua lua-resty-core curl wrk \
                lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev luajit2 libluajit2-5.1-dev \
                valgrind clang libclang-rt-14-dev clang-format
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build deps demo test spec lint format format-check emulator emulator-stop clean \
        bench

all: build
build: $(CORE_SO)

$(OUT)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DPSG_VERSION='"$(VERSION)"' -c $< -o $@

$(CORE_SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $(OBJS) $(LIBS)

# Installs only what is missing, so a prepared machine pays nothing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# ---- emulator -------------------------------------------------------------
emulator: deps
	@$(LUA_ENV) lua5.4 lua/passage/emulator/control.lua start

emulator-stop:
	@$(LUA_ENV) lua5.4 lua/passage/emulator/control.lua stop

# ---- demo -----------------------------------------------------------------
demo: deps build
	@$(MAKE) --no-print-directory emulator
	@$(LUA_ENV) $(LUA) examples/admin.lua; rc=$$?; \
	$(MAKE) --no-print-directory emulator-stop; exit $$rc

# ---- benchmarks -------------------------------------------------------------
# bench/run.lua starts an emulator on BENCH_PORT unless one answers there,
# seeds its own app, runs bench/decode.lua on the emulator's real pages and
# bench/calls.lua against the raw libcurl loop, and stops what it started.
BENCH_PORT   ?= 8790
RAW_CURL     := $(BUILD)/bench/raw_curl

$(RAW_CURL): bench/raw_curl.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -O2 -o $@ $< -lcurl

bench: deps build $(RAW_CURL)
	@$(LUA_ENV) PASSAGE_EMULATOR_PORT=$(BENCH_PORT) lua5.4 bench/run.lua $(LUA) $(LUA_VERSION)

# ---- tests ----------------------------------------------------------------
# Portability (5.1, 5.3, LuaJIT builds) and the rock install are specs too.
test: deps build lint format-check
	@$(MAKE) --no-print-directory spec

# The spec helper starts the emulator when it is not already answering and
# stops what it started.
# busted's own summary, restated as "N passed, N failed" for CI logs.
spec: build
	@mkdir -p $(BUILD)
	@set -o pipefail; $(LUA_ENV) busted --lua=lua5.4 $(BUSTED_ARGS) | tee $(BUILD)/spec.log; rc=$$?; \
	sed 's/\x1b\[[0-9;]*m//g' $(BUILD)/spec.log | \
	  awk '/successes \/ .* failures \/ .* errors/ { printf "spec: %d passed, %d failed\n", $$1, $$4 + $$7 }'; \
	exit $$rc

lint:
	luacheck -q lua spec bench examples

format:
	clang-format -i src/*.c src/*.h

format-check:
	clang-format --dry-run --Werror src/*.c src/*.h

clean:
	rm -rf $(BUILD)

# ---- concurrency: benchmarks, examples, OpenResty spec ----------------------
# bench-parallel   parallel walk (K = 4, 8, 16) and bulk get_user at 5 ms
#                  latency, as rates and ratios; BENCH_ARGS='users latency_ms'
# game-loop        examples/game_loop.lua (16 ms ticks, 50 ms API latency)
# reactor          examples/reactor.lua (socket.select host loop)
# spec-openresty   spec/openresty_spec.lua (builds the LuaJIT core first)
.PHONY: bench-parallel game-loop reactor spec-openresty

bench-parallel: deps build
	$(LUA_ENV) $(LUA) bench/parallel_walk.lua $(BENCH_ARGS)

game-loop reactor: deps build
	@$(MAKE) --no-print-directory emulator
	@$(LUA_ENV) $(LUA) examples/$(subst -,_,$@).lua; rc=$$?; \
	$(MAKE) --no-print-directory emulator-stop; exit $$rc

spec-openresty: deps build
	@$(MAKE) --no-print-directory build LUA_VERSION=jit
	$(LUA_ENV) busted --lua=lua5.4 spec/openresty_spec.lua
# ---- end of concurrency block ------------------------------------------------
