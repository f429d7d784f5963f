-- A TCP server answering with exact bytes that nginx would never send:
-- interim responses, HTTP/1.0, replies that are not HTTP, oversized
-- headers, odd chunking, connections that close at chosen moments. The
-- transports must cope with each the same way.
--
--   lua5.4 spec/support/raw_server.lua PORT     (runs until killed)
--
-- From a spec:
--   local raw = require "support.raw_server"
--   raw.start(port); raw.url("/interim"); raw.stop()
--
-- Each connection is served in order: a request is read (head and a
-- Content-Length body), its path picks the reply below. /count reads and
-- resets how many requests arrived on /second_hangs.
local socket = require "socket"

local M = {}

local function reply(head, body)
    return head .. "\r\n\r\n" .. (body or "")
end

local JSON = '{"ok":true}'
-- JSON, gzip-compressed (made once with Python's gzip.compress, mtime 0).
local GZIP_JSON = "\31\139\8\0\0\0\0\0\2\3\171\86\202\207\86\178\42\41\42\77\173\5\0\144\95\212\167\11\0\0\0"

local big_headers = {}
for i = 1, 4000 do
    big_headers[i] = string.format("X-Filler-%04d: %s", i, string.rep("f", 100))
end

-- path -> { bytes, then_ = "keep" | "close" | "hold" | "interim" | "reset_next" }
local REPLIES = {
    ["/interim"] = { "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
        .. reply("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " .. #JSON, JSON),
        then_ = "keep" },
    ["/http10"] = { reply("HTTP/1.0 200 OK\r\nContent-Type: application/json", JSON), then_ = "close" },
    ["/close"] = { reply("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: " .. #JSON, JSON),
        then_ = "close" },
    ["/to_close"] = { reply("HTTP/1.1 200 OK\r\nContent-Type: application/json", JSON), then_ = "close" },
    ["/not_http"] = { "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", then_ = "close" },
    ["/big_headers"] = { reply("HTTP/1.1 200 OK\r\n" .. table.concat(big_headers, "\r\n")
        .. "\r\nContent-Length: " .. #JSON, JSON), then_ = "keep" },
    ["/chunk_ext"] = { reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
        "4;name=value\r\n{\"ok\r\n7\r\n\":true}\r\n0\r\nX-Trailer: 1\r\n\r\n"), then_ = "keep" },
    ["/bad_chunk"] = { reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "zz\r\n{}\r\n0\r\n\r\n"),
        then_ = "close" },
    ["/cut_chunk"] = { reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "10\r\n{\"ok\":"),
        then_ = "close" },
    ["/lf_only"] = { "HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: " .. #JSON
        .. "\n\n" .. JSON, then_ = "keep" },
    ["/two_lengths"] = { reply("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Length: 12", JSON),
        then_ = "close" },
    ["/silent"] = { "", then_ = "hold" },
    -- Answered; the next request on the connection, whatever it asks, gets
    -- a reset: a kept-alive connection that died under a client.
    ["/then_reset"] = { reply("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        .. #JSON, JSON), then_ = "reset_next" },
    -- Malformed framing and headers (each must be a network error on both
    -- transports), an unasked coding, long but legal chunk extensions and
    -- trailers, and an answer that never gets past its interim responses.
    ["/no_colon"] = { reply("HTTP/1.1 200 OK\r\nX-Broken header line\r\nContent-Length: " .. #JSON, JSON),
        then_ = "close" },
    ["/nul_header"] = { reply("HTTP/1.1 200 OK\r\nX-Nul: a\0b\r\nContent-Length: " .. #JSON, JSON),
        then_ = "close" },
    ["/te_gzip"] = { reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", JSON), then_ = "close" },
    ["/http2_line"] = { reply("HTTP/2 200\r\nContent-Length: " .. #JSON, JSON), then_ = "close" },
    ["/length_junk"] = { reply("HTTP/1.1 200 OK\r\nContent-Length: 11abc", JSON), then_ = "close" },
    ["/length_negative"] = { reply("HTTP/1.1 200 OK\r\nContent-Length: -1", JSON), then_ = "close" },
    ["/content_encoding"] = { reply("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
        .. #GZIP_JSON, GZIP_JSON), then_ = "close" },
    ["/long_chunk_ext"] = { reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
        "b;x=" .. string.rep("e", 10240) .. "\r\n" .. JSON .. "\r\n0\r\n\r\n"), then_ = "close" },
    ["/many_trailers"] = { reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
        "b\r\n" .. JSON .. "\r\n0\r\n" .. string.rep("X-T: 1\r\n", 10000) .. "\r\n"), then_ = "close" },
    ["/endless_continue"] = { "HTTP/1.1 100 Continue\r\n\r\n", then_ = "interim" },
    ["/empty_reply"] = { "", then_ = "close" },
    ["/short_body"] = { reply("HTTP/1.1 200 OK\r\nContent-Length: 50", JSON), then_ = "close" },
    ["/huge_chunk"] = { reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
        "fffffffffffffffffff\r\n{}\r\n0\r\n\r\n"), then_ = "close" },
    ["/length_and_chunked"] = { reply("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked",
        "b\r\n" .. JSON .. "\r\n0\r\n\r\n"), then_ = "close" },
    ["/no_reason"] = { reply("HTTP/1.1 200\r\nContent-Length: " .. #JSON, JSON), then_ = "keep" },
    ["/head_cut"] = { "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n", then_ = "close" },
    ["/folded"] = { reply("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: " .. #JSON, JSON),
        then_ = "close" },
}

-- The path of the request at the start of buf, and the bytes it spans; nil
-- while incomplete.
local function parse_request(buf)
    local stop = buf:find("\r\n\r\n", 1, true)
    if not stop then
        return nil
    end
    local path = buf:match("^%u+ (%S+) HTTP/1%.%d\r\n") or "/"
    local length = tonumber(buf:sub(1, stop):lower():match("\ncontent%-length:%s*(%d+)")) or 0
    if #buf < stop + 3 + length then
        return nil
    end
    return path, stop + 3 + length
end

function M.serve(port)
    local server = assert(socket.bind("127.0.0.1", port, 64))
    server:settimeout(0)
    local conns = {} -- socket -> { buf, served }
    local second_hangs = 0
    local streaming = {} -- socket -> true
    while true do
        local watch = { server }
        for c in pairs(conns) do
            watch[#watch + 1] = c
        end
        -- Connections in "interim" get another 100 Continue every 50 ms.
        local ready = socket.select(watch, nil, next(streaming) and 0.05 or 1)
        for c in pairs(streaming) do
            if not c:send("HTTP/1.1 100 Continue\r\n\r\n") then
                streaming[c] = nil
            end
        end
        for _, s in ipairs(ready) do
            if s == server then
                local c = server:accept()
                if c then
                    c:settimeout(0)
                    conns[c] = { buf = "", served = 0 }
                end
            else
                local st = conns[s]
                local data, err, partial = s:receive(65536)
                data = data or partial
                if data and data ~= "" then
                    st.buf = st.buf .. data
                end
                local path, used = parse_request(st.buf)
                if path and st.reset_next then
                    s:setoption("linger", { on = true, timeout = 0 })
                    s:close()
                    conns[s] = nil
                    path = nil
                end
                while path and conns[s] do
                    st.buf = st.buf:sub(used + 1)
                    st.served = st.served + 1
                    local r = REPLIES[path:match("^[^?]*")]
                    if path == "/count" then
                        local n = tostring(second_hangs)
                        second_hangs = 0
                        r = { reply("HTTP/1.1 200 OK\r\nContent-Length: " .. #n, n), then_ = "keep" }
                    elseif path == "/second_hangs" then
                        -- The first request on a connection is answered; a
                        -- second one on the same connection gets a close.
                        second_hangs = second_hangs + 1
                        if st.served == 1 then
                            r = { reply("HTTP/1.1 200 OK\r\nContent-Length: " .. #JSON, JSON),
                                then_ = "keep" }
                        else
                            r = { "", then_ = "close" }
                        end
                    end
                    r = r or { reply("HTTP/1.1 404 Not Found\r\nContent-Length: 0"), then_ = "keep" }
                    if r[1] ~= "" then
                        s:settimeout(5)
                        s:send(r[1])
                        s:settimeout(0)
                    end
                    if r.then_ == "close" then
                        s:close()
                        conns[s] = nil
                    elseif r.then_ == "interim" then
                        streaming[s] = true
                        path = nil
                    elseif r.then_ == "keep" then
                        path, used = parse_request(st.buf)
                    elseif r.then_ == "reset_next" then
                        st.reset_next = true
                        path = nil
                    else
                        path = nil -- hold: answer nothing more
                    end
                end
                if conns[s] and err == "closed" then
                    s:close()
                    conns[s] = nil
                    streaming[s] = nil
                end
            end
        end
    end
end

-- ---- control from a spec ---------------------------------------------------

local running -- { port, pid, log }

function M.url(path)
    return "http://127.0.0.1:" .. running.port .. (path or "")
end

function M.start(port)
    if running then
        return
    end
    local src = debug.getinfo(1, "S").source:gsub("^@", "")
    -- The server's own output goes to a log of ours, removed by stop().
    local log = os.tmpname()
    local p = io.popen(string.format("lua5.4 %q %d >%q 2>&1 & echo $!", src, port, log))
    local pid = tonumber(p:read("*l"))
    p:close()
    running = { port = port, pid = pid, log = log }
    for _ = 1, 100 do
        local c = socket.tcp()
        c:settimeout(0.2)
        if c:connect("127.0.0.1", port) then
            c:close()
            return
        end
        c:close()
        socket.sleep(0.05)
    end
    M.stop()
    error("the raw server did not start on port " .. port)
end

function M.stop()
    if running and running.pid then
        os.execute(string.format("kill %d 2>>%q", running.pid, running.log))
    end
    if running then
        os.remove(running.log)
    end
    running = nil
end

if arg and arg[0] and arg[0]:match("raw_server%.lua$") and tonumber(arg[1]) then
    M.serve(tonumber(arg[1]))
end

return M
