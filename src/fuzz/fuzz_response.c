/*
 * libFuzzer harness: one HTTP response (status, header lines, body) through
 * everything that turns a response into Lua values or an error:
 *
 *   header_cb / write_cb   the libcurl callbacks of request.c (Retry-After,
 *                          Content-Type, the body cap)
 *   l_response             the response table, with psg_json_decode and the
 *                          shape cache of a long-lived transport
 *   engine.outcome         the client's verdict (errors.lua, retry.lua and
 *                          the response checks of users.lua), in Lua, by
 *                          src/fuzz/fuzz_response.lua, which also compares the
 *                          decoded body with lua-cjson when both accept it
 *
 * Not part of the module; built by `make fuzz` (clang, -fsanitize=fuzzer).
 * Run from the repository root (the Lua side is loaded from lua/ and src/).
 *
 * Input layout:
 *   byte 0   status: < 128 picks a common one, else 100 + 4 * (b - 128)
 *   byte 1   bits 0-2 libcurl's verdict (mostly CURLE_OK), bit 3 keep_null,
 *            bit 4 max_depth 4, bit 5 a 64-byte body cap, bit 6 request sent
 *   byte 2   low nibble: the operation; high nibble: body chunk size
 *   then     header lines up to the first empty line, then the body
 */
#include "../request.c"

#include <stdint.h>
#include <stdlib.h>

#include <lualib.h>

int luaopen_passage_core(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *FL;
static int check_ref = LUA_NOREF;
static psg_transport fake_tr;         /* only its shape cache is used */
static int key_table_ref = LUA_NOREF; /* the key table of its shape cache */

static const long statuses[] = {200, 201, 200, 204, 0,   302, 400, 401,
                                404, 409, 429, 500, 502, 503, 504, 100};
static const CURLcode verdicts[] = {CURLE_OK,
                                    CURLE_OK,
                                    CURLE_OK,
                                    CURLE_OK,
                                    CURLE_OPERATION_TIMEDOUT,
                                    CURLE_COULDNT_CONNECT,
                                    CURLE_PEER_FAILED_VERIFICATION,
                                    CURLE_RECV_ERROR};

static void die(const char *what)
{
    fprintf(stderr, "fuzz_response: %s: %s\n", what, lua_tostring(FL, -1));
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FL = luaL_newstate();
    luaL_openlibs(FL);
    luaL_requiref(FL, "passage.core", luaopen_passage_core, 0);
    lua_pop(FL, 1);
    if (luaL_dostring(FL, "package.path = 'lua/?.lua;lua/?/init.lua;spec/?.lua;' .. package.path"))
        die("package.path");
    if (luaL_dofile(FL, "src/fuzz/fuzz_response.lua"))
        die("loading src/fuzz/fuzz_response.lua (run from the repository root)");
    check_ref = luaL_ref(FL, LUA_REGISTRYINDEX);
    fake_tr.shapes = psg_json_shapes_new();
    if (fake_tr.shapes == NULL)
        abort();
    psg_json_push_key_table(FL);
    key_table_ref = luaL_ref(FL, LUA_REGISTRYINDEX);
    return 0;
}

/* Feeds header lines as libcurl does: one call per line, line end included.
 * Returns the offset of the body. */
static size_t feed_headers(psg_easy *e, const uint8_t *data, size_t size)
{
    size_t pos = 0;
    while (pos < size) {
        const uint8_t *nl = memchr(data + pos, '\n', size - pos);
        size_t len = nl != NULL ? (size_t)(nl - (data + pos)) + 1 : size - pos;
        int blank = len == 1 || (len == 2 && data[pos] == '\r');
        /* a private copy, so ASan sees any read past the line */
        char *line = (char *)malloc(len);
        if (line == NULL)
            abort();
        memcpy(line, data + pos, len);
        if (header_cb(line, 1, len, e) != len) {
            /* A refused line (r->malformed) ends the transfer, as in libcurl. */
            free(line);
            e->r->code = CURLE_WRITE_ERROR;
            return size;
        }
        free(line);
        pos += len;
        if (blank)
            break;
    }
    return pos;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    psg_request *r;
    psg_easy carrier; /* what libcurl hands the callbacks: the handle's */
    size_t body_at, chunk, pos;
    int top, op;
    if (size < 3)
        return 0;
    top = lua_gettop(FL);

    r = (psg_request *)psg_newuserdata(FL, sizeof *r);
    memset(r, 0, sizeof *r);
    luaL_getmetatable(FL, PSG_REQUEST_MT);
    lua_setmetatable(FL, -2);
    /* its user value as a transport's anchor table: the keys one input's
     * decode remembers are there for the next input's */
    lua_createtable(FL, 2, 0);
    lua_pushboolean(FL, 0);
    lua_rawseti(FL, -2, PSG_ANCHOR_TRANSPORT);
    lua_rawgeti(FL, LUA_REGISTRYINDEX, key_table_ref);
    lua_rawseti(FL, -2, PSG_ANCHOR_KEY_TABLE);
    psg_setuservalue(FL, -2);
    strcpy(r->method, "GET");

    r->status = data[0] < 128 ? statuses[data[0] % 16] : 100 + 4 * (long)(data[0] - 128);
    r->code = verdicts[data[1] & 7];
    r->json.keep_null = (data[1] & 8) != 0;
    r->json.max_depth = (data[1] & 16) ? 4 : 0;
    r->max_body = (data[1] & 32) ? 64 : 0;
    r->request_size = (data[1] & 64) ? 120 : 0;
    op = data[2] & 15;
    chunk = (size_t)1 << (data[2] >> 4);
    data += 3;
    size -= 3;

    memset(&carrier, 0, sizeof carrier);
    carrier.r = r;
    body_at = feed_headers(&carrier, data, size);
    for (pos = body_at; pos < size; pos += chunk) {
        size_t n = size - pos < chunk ? size - pos : chunk;
        char *piece = (char *)malloc(n);
        size_t taken;
        if (piece == NULL)
            abort();
        memcpy(piece, data + pos, n);
        taken = write_cb(piece, 1, n, &carrier);
        free(piece);
        if (taken != n) {
            r->code = CURLE_WRITE_ERROR; /* what libcurl reports then */
            break;
        }
    }
    r->tr = &fake_tr;
    r->done = 1;

    lua_rawgeti(FL, LUA_REGISTRYINDEX, check_ref);
    /* response() as requests have it: its upvalues name the fields. */
    luaL_getmetatable(FL, PSG_REQUEST_MT);
    lua_getfield(FL, -1, "__index");
    lua_getfield(FL, -1, "response");
    lua_replace(FL, -3);
    lua_pop(FL, 1);
    lua_pushvalue(FL, top + 1);
    if (lua_pcall(FL, 1, 1, 0) != LUA_OK)
        die("response()");
    lua_pushinteger(FL, (lua_Integer)op);
    lua_pushlstring(FL, (const char *)data + body_at, size - body_at);
    lua_pushboolean(FL, r->json.keep_null);
    lua_pushboolean(FL, r->json.max_depth != 0);
    if (lua_pcall(FL, 5, 0, 0) != LUA_OK)
        die("check");
    lua_settop(FL, top);
    return 0;
}
