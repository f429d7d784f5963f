# passage-lua: build, run the demo, test.
#   make demo   runs examples/admin.lua against the emulator (started and
#               stopped around it unless one already answers on the port)
#   make test   installs what is missing, builds, lints, runs every spec on
#               Lua 5.4 and on LuaJIT (make spec, make spec-luajit)
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
CLI          := $(OUT)/bin/passage-users
SRCS         := $(wildcard src/*.c)
OBJS         := $(patsubst src/%.c,$(OUT)/obj/%.o,$(SRCS))
HDRS         := $(wildcard src/*.h)

# Where specs, the demo and benchmarks find the modules of this checkout.
LUA_ENV      := LUA_PATH='lua/?.lua;lua/?/init.lua;emulator/lua/?.lua;spec/?.lua;;' LUA_CPATH='$(OUT)/?.so;;'

# openssl makes the specs' test certificates; dpkg-dev's dpkg-architecture
# finds the multiarch folder where nginx's LuaJIT loads lua-cjson; procps's
# pgrep finds an nginx worker for the benchmarks; minetest-server and love
# are the real hosts of examples/luanti and examples/love (their specs), and
# lua-luv and lua-cqueues the loops of passage.loop's adapters.
DEB_PACKAGES := gcc make dpkg-dev lua5.4 liblua5.4-dev libcurl4-openssl-dev lua-cjson \
                lua-busted luarocks lua-check nginx-light libnginx-mod-http-lua lua-resty-core \
                curl wrk openssl procps \
                lua5.1 liblua5.1-0-dev lua5.3 liblua5.3-dev luajit2 libluajit2-5.1-dev \
                valgrind clang libclang-rt-14-dev clang-format \
                lua-argparse lua-term lua-socket lua-luv tmux lua-ldoc lua-markdown \
                minetest-server love lua-cqueues
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build deps demo test spec spec-luajit lint format format-check emulator emulator-stop clean \
        bench asan valgrind fuzz fuzz-short fuzz-corpus docs

all: build
build: $(CORE_SO) $(CLI)

$(OUT)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -DPSG_VERSION='"$(VERSION)"' -c $< -o $@

$(CORE_SO): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $(OBJS) $(LIBS)

# The command of this checkout: bin/passage-users with its modules and core.
$(CLI): Makefile
	@mkdir -p $(dir $@)
	@printf '%s\n' '#!/bin/sh' \
	  "LUA_PATH='$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;' \\" \
	  "LUA_CPATH='$(CURDIR)/$(OUT)/?.so;;' \\" \
	  'exec $(LUA) $(CURDIR)/bin/passage-users "$$@"' > $@
	@chmod +x $@

# Installs only what is missing, so a prepared machine pays nothing.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# node and npm for spec/node_sdk_spec.lua (any install will do, e.g. NodeSource's)
	@command -v npm >/dev/null 2>&1 || { echo "installing: nodejs npm"; $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }

# ---- emulator -------------------------------------------------------------
# emulator/bin/passage-emulator (the passage-emulator rock's command); nginx's
# files live in its runtime directory (passage-emulator --help).
EMULATOR     := $(LUA_ENV) lua5.4 emulator/bin/passage-emulator

emulator: deps
	@$(EMULATOR) start --port $(PORT)

emulator-stop:
	@$(EMULATOR) stop --port $(PORT)

# ---- demo -----------------------------------------------------------------
# `run` stops the emulator afterwards only if it started it.
demo: deps build
	@$(EMULATOR) run --port $(PORT) -- $(LUA) examples/admin.lua

# ---- benchmarks -------------------------------------------------------------
# bench/run.lua starts an emulator on BENCH_PORT unless one answers there,
# seeds its own app, runs bench/decode.lua on the emulator's real pages and
# bench/calls.lua against the raw libcurl loop (and, with luajit and Debian's
# lua-curl, the lua-curl + lua-cjson peer), client and the emulator it started
# pinned to CPU BENCH_CPU (default 0), and stops what it started.
BENCH_PORT   ?= 8790
RAW_CURL     := $(BUILD)/bench/raw_curl

$(RAW_CURL): bench/raw_curl.c
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -O2 -o $@ $< -lcurl

bench: deps build $(RAW_CURL)
	@$(LUA_ENV) PASSAGE_EMULATOR_PORT=$(BENCH_PORT) lua5.4 bench/run.lua $(LUA) $(LUA_VERSION)

# ---- tests ----------------------------------------------------------------
# Portability (5.1, 5.3, LuaJIT builds) and the rock install are specs too.
# The whole suite runs twice: on Lua 5.4, then with the library on LuaJIT
# (about 75 s each).
test: deps build lint format-check
	@$(MAKE) --no-print-directory spec
	@$(MAKE) --no-print-directory spec-luajit

# The spec helper starts the emulator when it is not already answering and
# stops what it started.
# busted's own summary, restated as "N passed, N failed" for CI logs:
# $(call spec_summary,log file,label).
spec_summary = sed 's/\x1b\[[0-9;]*m//g' $(1) | \
  awk '/ success(es)? \/ [0-9]+ failures? \/ [0-9]+ errors? / { printf "$(2): %d passed, %d failed\n", $$1, $$4 + $$7 }'

spec: build
	@mkdir -p $(BUILD)
	@set -o pipefail; $(LUA_ENV) busted --lua=lua5.4 $(BUSTED_ARGS) | tee $(BUILD)/spec.log; rc=$$?; \
	$(call spec_summary,$(BUILD)/spec.log,spec); \
	exit $$rc

# The whole suite again with the library under test on LuaJIT (what Luanti,
# LÖVE and OpenResty run): busted re-runs itself with luajit, which loads
# Debian's busted, luassert and luasocket from their Lua 5.1 folders, and the
# LuaJIT build of the core. Helper processes (the emulator's command, raw
# servers) stay on lua5.4; passage-users runs its LuaJIT build. busted
# passes its arguments to luajit through a shell unquoted: in BUSTED_ARGS,
# write a pattern's spaces as "." (--filter=walks.every.user).
LUA_ENV_JIT  := LUA_PATH='lua/?.lua;lua/?/init.lua;emulator/lua/?.lua;spec/?.lua;;' LUA_CPATH='$(BUILD)/jit/?.so;;'

spec-luajit:
	@$(MAKE) --no-print-directory build LUA_VERSION=jit
	@mkdir -p $(BUILD)
	@set -o pipefail; $(LUA_ENV_JIT) busted --lua=luajit $(BUSTED_ARGS) | tee $(BUILD)/spec-luajit.log; rc=$$?; \
	$(call spec_summary,$(BUILD)/spec-luajit.log,spec-luajit); \
	exit $$rc

lint:
	luacheck -q lua emulator emulator/bin/passage-emulator spec bench examples bin/passage-users

# The LDoc reference (config.ld) in DOCS_DIR; any warning fails it
# (spec/docs_spec.lua builds it elsewhere and checks every public name has
# an entry). LDoc 1.4.6 links a class (@type Client) to #Client but anchors
# its section as Class_Client: the sed adds the anchor its links use.
DOCS_DIR     ?= $(BUILD)/docs
docs: deps
	@rm -rf $(DOCS_DIR) && mkdir -p $(DOCS_DIR)
	@ldoc -d $(DOCS_DIR) . >/dev/null 2>$(DOCS_DIR).warnings; rc=$$?; \
	if [ $$rc -ne 0 ] || [ -s $(DOCS_DIR).warnings ]; then \
	  cat $(DOCS_DIR).warnings; echo "docs: ldoc warned (warnings are errors)"; exit 1; fi
	@sed -i 's|<a name="Class_\([A-Za-z_]*\)"></a>|&<a name="\1"></a>|' $(DOCS_DIR)/modules/*.html
	@echo "docs: $(DOCS_DIR)/index.html"

format:
	clang-format -i src/*.c src/*.h src/fuzz/*.c

format-check:
	clang-format --dry-run --Werror src/*.c src/*.h src/fuzz/*.c

# ---- memory checks ----------------------------------------------------------
# The specs that drive the C core, run under a checker, with the emulator
# outside the checked process (`passage-emulator run` starts one unless one
# answers, and stops only what it started): only the Lua interpreter running
# busted is checked (busted is a Lua script, so it is run as
# `lua5.4 /usr/bin/busted`). Any finding fails the target.
#   make spec-gc    GC_SPECS with the collector at its most aggressive: a full
#                   cycle, finalizers included, at every allocation (spec/
#                   support/gc_torture.lua), so C or Lua code that frees what
#                   a running call still uses is caught; json_decode and the
#                   paginator's big walks would take hours so, and are left out
#   make asan       MEMCHECK_SPECS, then GC_SPECS under torture, with ASan+UBSan
#   make valgrind   MEMCHECK_SPECS under memcheck
MEMCHECK_SPECS ?= spec/json_decode_spec.lua spec/transport_spec.lua spec/users_spec.lua \
                  spec/reliability_spec.lua spec/async_spec.lua spec/lifecycle_spec.lua \
                  spec/nonblocking_spec.lua spec/reactor_spec.lua
GC_SPECS     ?= spec/lifecycle_spec.lua spec/users_spec.lua spec/async_spec.lua \
                spec/transport_spec.lua spec/reliability_spec.lua
WITH_EMULATOR = $(EMULATOR) run --port $(PORT) --
CLANG        ?= clang
SANITIZE     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_OUT     := $(BUILD)/asan
ASAN_ENV      = ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1 \
                UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 PASSAGE_SLOW=1 \
                LD_PRELOAD=$$($(CLANG) -print-file-name=libclang_rt.asan-x86_64.so) \
                LUA_PATH='lua/?.lua;lua/?/init.lua;emulator/lua/?.lua;spec/?.lua;;' \
                LUA_CPATH='$(ASAN_OUT)/$(LUA_VERSION)/?.so;;'

.PHONY: spec-gc
spec-gc: deps build
	@$(WITH_EMULATOR) env PASSAGE_GC_TORTURE=1 PASSAGE_SLOW=1 $(LUA_ENV) busted --lua=lua5.4 $(GC_SPECS)

# The instrumented module in build/asan; the specs run with the sanitizer
# runtime preloaded into lua5.4 (not instrumented itself). Child processes
# (sh, mkdir, kill) see the preload too, which is harmless; nginx and
# openssl are started without it (spec/support/test_server.lua). No leak
# is suppressed.
asan: deps
	@$(MAKE) --no-print-directory BUILD=$(ASAN_OUT) CC=$(CLANG) OPT="-O1 -g $(SANITIZE)" \
	  EXTRA_LDFLAGS="$(SANITIZE)" build
	@$(WITH_EMULATOR) env $(ASAN_ENV) lua5.4 /usr/bin/busted $(MEMCHECK_SPECS)
	@$(WITH_EMULATOR) env $(ASAN_ENV) PASSAGE_GC_TORTURE=1 lua5.4 /usr/bin/busted $(GC_SPECS)

VALGRIND     := valgrind --trace-children=no --leak-check=full --errors-for-leak-kinds=definite \
                --error-exitcode=1 --num-callers=30

valgrind: deps build
	@$(WITH_EMULATOR) env PASSAGE_SLOW=1 $(LUA_ENV) $(VALGRIND) lua5.4 /usr/bin/busted $(MEMCHECK_SPECS)

# ---- fuzzing -----------------------------------------------------------------
# src/fuzz/fuzz_response.c: a libFuzzer harness over the response path
# (header and body callbacks, decoder, response table, engine.outcome).
# The seed corpus is fetched from the emulator into build/fuzz/seed.
#   make fuzz-short   about 90 s, for CI; fails on any crash
#   make fuzz         FUZZ_SECONDS (default 3600) on FUZZ_JOBS cores (default 1;
#                     with more, libFuzzer logs each job to fuzz-<n>.log)
# A crash leaves its input in build/fuzz/crash-*; replay it with
#   build/fuzz/fuzz_response build/fuzz/crash-<id>
FUZZ_OUT     := $(BUILD)/fuzz
FUZZ_BIN     := $(FUZZ_OUT)/fuzz_response
FUZZ_SRCS    := src/fuzz/fuzz_response.c src/core.c src/easy_url.c src/json_decode.c src/json_number.c src/json_check.c src/transport.c src/sockets.c src/headers.c src/segment.c
FUZZ_SECONDS ?= 3600
FUZZ_JOBS    ?= 1
# A smaller quarantine and shorter allocation stacks keep a long run's
# memory flat (the sanitizer's own bookkeeping otherwise grows for hours).
FUZZ_ENV     := ASAN_OPTIONS=quarantine_size_mb=32:malloc_context_size=10 \
                UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
FUZZ_FLAGS    = -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
                -artifact_prefix=$(FUZZ_OUT)/ $(FUZZ_OUT)/corpus $(FUZZ_OUT)/seed

$(FUZZ_BIN): $(FUZZ_SRCS) src/request.c src/fuzz/fuzz_response.lua $(HDRS)
	@mkdir -p $(dir $@)
	$(CLANG) -std=c99 -D_POSIX_C_SOURCE=200809L $(WARN) -O1 -g $(SANITIZE) -fsanitize=fuzzer \
	  -I$(LUA_INC_5.4) -DPSG_VERSION='"$(VERSION)"' -o $@ $(FUZZ_SRCS) -llua5.4 $(LIBS)

fuzz-corpus: build
	@mkdir -p $(FUZZ_OUT)/seed $(FUZZ_OUT)/corpus
	@$(LUA_ENV) lua5.4 bench/fuzz_corpus.lua $(FUZZ_OUT)/seed

fuzz-short: deps $(FUZZ_BIN) fuzz-corpus
	$(FUZZ_ENV) $(FUZZ_BIN) -max_total_time=90 $(FUZZ_FLAGS)

fuzz: deps $(FUZZ_BIN) fuzz-corpus
	$(FUZZ_ENV) $(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) \
	  $(if $(filter-out 1,$(FUZZ_JOBS)),-jobs=$(FUZZ_JOBS) -workers=$(FUZZ_JOBS)) $(FUZZ_FLAGS)

clean:
	rm -rf $(BUILD)

# ---- concurrency: benchmarks, examples, OpenResty spec ----------------------
# bench-parallel   parallel walk (K = 4, 8, 16) and bulk get_user at 5 ms
#                  latency, as rates and ratios; BENCH_ARGS='users latency_ms'
# bench-embed      see below
# game-loop        examples/game_loop.lua (16 ms ticks, 50 ms API latency)
# reactor          examples/reactor.lua (socket.select host loop)
# spec-openresty   spec/openresty_spec.lua (builds the LuaJIT core first)
# bench-openresty  the client in one nginx worker against lua-resty-http +
#                  cjson (../shared/peers), wrk, the emulator on BENCH_PORT
#                  as the upstream (its data replaced); about two minutes
.PHONY: bench-parallel bench-embed game-loop reactor spec-openresty bench-openresty

bench-parallel: deps build
	$(LUA_ENV) $(LUA) bench/parallel_walk.lua $(BENCH_ARGS)

# bench-embed      the library inside hosts that never block: lost wakeups in
#                  100,000 calls by the socket protocol, 1,000 runs of
#                  examples/reactor.lua, 100 luv and 100 cqueues runs, a walk
#                  in 50 ms steps with a budget, a walk's live heap
#                  (EMBED_SCALE=0.1 for a quick look); about 15 minutes
bench-embed: deps build
	@$(LUA_ENV) PASSAGE_EMULATOR_PORT=$(BENCH_PORT) $(LUA) bench/embed.lua

game-loop reactor: deps build
	@$(WITH_EMULATOR) env $(LUA_ENV) $(LUA) examples/$(subst -,_,$@).lua

spec-openresty: deps build
	@$(MAKE) --no-print-directory build LUA_VERSION=jit
	$(LUA_ENV) busted --lua=lua5.4 spec/openresty_spec.lua

bench-openresty: deps build
	@$(MAKE) --no-print-directory build LUA_VERSION=jit
	@$(LUA_ENV) PASSAGE_EMULATOR_PORT=$(BENCH_PORT) lua5.4 bench/openresty.lua
# ---- end of concurrency block ------------------------------------------------
