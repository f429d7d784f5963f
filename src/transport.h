/*
 * The transport: one libcurl multi handle per client (transport.c) and the
 * requests it carries, one easy handle each (request.c). See core.c for the
 * Lua-visible contract.
 */
#ifndef PSG_TRANSPORT_H
#define PSG_TRANSPORT_H

#include "compat.h"

#define PSG_TRANSPORT_MT "passage.transport"
#define PSG_REQUEST_MT "passage.request"
#define PSG_HEADERS_MT "passage.headers"

/* Registers core.transport (and the request metatable) on the table at the
 * top of the stack. */
void psg_transport_register(lua_State *L);

#endif
