-- passage.cosocket.http1: the bytes of HTTP/1.1 for passage.cosocket. The
-- request side: header sets (checked once, their lines kept out of sight)
-- and the request's bytes. The response side: the status line and headers
-- (interim answers skipped), then a body by Content-Length, chunked or to
-- the close, each within the caps a reply may not pass (as much as libcurl
-- takes) and the exchange's deadline (passage.cosocket.deadline). What each
-- hostile reply gives is the same verdict as on the libcurl transport: the
-- table in docs/reliability.md.
local core = require "passage.core"
local deadline = require "passage.cosocket.deadline"

local M = {}

local byte, find, sub, lower, match = string.byte, string.find, string.sub, string.lower, string.match
local concat = table.concat
local fail, io_failure, read_some = deadline.fail, deadline.io_failure, deadline.read_some

-- Bounds on what a reply may hold before its body, as much as libcurl
-- takes (passage.core has libcurl's figures): the status line and headers
-- of one response (interim ones each count on their own), and any one line
-- of them.
local MAX_HEADER_BYTES = core.MAX_RESPONSE_HEADER_BYTES
local MAX_HEADER_LINE_BYTES = core.MAX_RESPONSE_HEADER_LINE_BYTES
-- What is kept of a chunk-size or trailer line (the size and its start).
local MAX_CHUNK_LINE = 4096
-- The most a single read asks for; nginx returns what it has buffered.
local READ_MAX = 65536
M.READ_MAX = READ_MAX
-- A body up to this size goes out with the headers in one write.
local INLINE_BODY_MAX = 16384
-- Methods that always carry a Content-Length, even 0: some servers answer
-- 411 without one.
local BODY_METHODS = { POST = true, PATCH = true, PUT = true }

-- ---- request: header sets and bytes ------------------------------------------

function M.has_ctl(s)
    return find(s, "[\r\n%z]") ~= nil
end
local has_ctl = M.has_ctl

-- The header lines of each set live here, out of the set itself, so that a
-- dumped set (or anything holding one) never shows them.
local header_blocks = setmetatable({}, { __mode = "k" })
-- Which of the headers the transport adds a set already has.
local header_flags = setmetatable({}, { __mode = "k" })

local HeaderSet = {
    __tostring = function()
        return "passage.headers"
    end,
    __metatable = "passage.headers",
}

function M.header_set(list, level)
    if type(list) ~= "table" then
        error("passage.cosocket: headers must be an array of strings (got " .. type(list) .. ")",
            level + 1)
    end
    local lines = {}
    local user_agent = false
    for i = 1, #list do
        local h = list[i]
        if type(h) ~= "string" then
            error("passage.cosocket: header " .. i .. " is not a string", level + 1)
        end
        -- The message never quotes the header: it may carry a secret.
        if has_ctl(h) then
            error("passage.cosocket: header " .. i .. " contains CR, LF or NUL", level + 1)
        end
        if lower(sub(h, 1, 11)) == "user-agent:" then
            user_agent = true
        end
        lines[i] = h
    end
    lines[#lines + 1] = ""
    local set = setmetatable({}, HeaderSet)
    header_blocks[set] = concat(lines, "\r\n")
    header_flags[set] = user_agent
    return set
end

-- The header lines of a set made by header_set(), and whether one of them
-- is a User-Agent; nil when `set` is not one.
function M.header_block(set)
    return header_blocks[set], header_flags[set]
end

-- The request's bytes: a string, or (for a long body) an array of the head
-- and the body, which nginx writes without joining them.
function M.request_bytes(method, target, host_line, user_agent_line, block, body)
    local length = ""
    if body or BODY_METHODS[method] then
        length = "Content-Length: " .. (body and #body or 0) .. "\r\n"
    end
    local head = method .. " " .. target .. " HTTP/1.1\r\n" .. host_line .. user_agent_line .. block
        .. length .. "\r\n"
    if body == nil or body == "" then
        return head
    elseif #body <= INLINE_BODY_MAX then
        return head .. body
    end
    return { head, body }
end

-- ---- response: head ----------------------------------------------------------------

-- The first byte after the blank line ending the header block that starts
-- at `from`, or nil when it has not arrived yet. (Lines may end in LF
-- alone; the search stops at the first blank line, not the body's end.)
local function header_end(buf, from)
    local _, e = find(buf, "\n\r?\n", from)
    return e and e + 1
end

-- Reads one response head from buf (more arriving on sock as needed).
-- Returns status, version minor, rest of buf after the head, the head's
-- own bounds; or nil after fail(). Interim (1xx) responses are skipped.
local function read_head(sock, req, buf)
    local from = 1
    while true do
        local stop = header_end(buf, from)
        if stop and stop - from > MAX_HEADER_BYTES then
            return nil, fail(req, "too_large", "response headers larger than "
                .. MAX_HEADER_BYTES .. " bytes")
        elseif stop then
            local minor, status = match(buf, "^HTTP/1%.(%d) (%d%d%d)[^\n]*\n", from)
            status = tonumber(status)
            if not status or status < 100 then
                return nil, fail(req, "network", "the reply is not HTTP/1.x")
            end
            if status >= 200 then
                return status, minor, buf, from, stop
            end
            from = stop -- interim: the final response follows
        else
            -- A head cut short still has the status libcurl would report.
            local function status_so_far()
                local status = tonumber(match(buf, "^HTTP/1%.%d (%d%d%d)[^\n]*\n", from))
                if status and status >= 200 then
                    req.status = status
                end
            end
            if #buf - from + 1 > MAX_HEADER_BYTES then
                status_so_far()
                return nil, fail(req, "too_large", "response headers larger than "
                    .. MAX_HEADER_BYTES .. " bytes")
            end
            if #buf >= from + 4 and sub(buf, from, from + 4) ~= "HTTP/" then
                return nil, fail(req, "network", "the reply is not HTTP/1.x")
            end
            local data, err = read_some(sock, req, READ_MAX)
            if not data then
                status_so_far()
                return nil, io_failure(req, err, "receiving the response headers")
            end
            buf = (from == 1 and buf or sub(buf, from)) .. data
            from = 1
        end
    end
end

-- The headers the exchange needs, from the head buf[from, stop). Sets
-- req.retry_after and req.content_type; returns true, content_length
-- (string or nil), chunked, close (the connection cannot be reused); or
-- false after fail().
local function parse_headers(req, buf, from, stop)
    local length, chunked, close = nil, false, false
    local nul = find(buf, "\0", from, true)
    if nul and nul < stop then
        return fail(req, "network", "a NUL byte in the response headers")
    end
    local pos = find(buf, "\n", from, true) + 1
    while pos < stop do
        local eol = find(buf, "\n", pos, true)
        if eol - pos > MAX_HEADER_LINE_BYTES then
            return fail(req, "too_large", "a response header line larger than "
                .. MAX_HEADER_LINE_BYTES .. " bytes")
        end
        local colon = find(buf, ":", pos, true)
        local first = byte(buf, pos)
        if not (colon and colon < eol) and first ~= 32 and first ~= 9 and eol - pos > 1 then
            -- (A line that starts with a blank continues the one before:
            -- obsolete folding, which libcurl accepts too.)
            return fail(req, "network", "a response header line without a colon")
        end
        if colon and colon < eol then
            local n = colon - pos
            -- Only names of the lengths of interest are looked at.
            if n == 10 or n == 11 or n == 12 or n == 14 or n == 17 then
                local name = lower(sub(buf, pos, colon - 1))
                local value = match(sub(buf, colon + 1, eol - 1), "^[ \t]*(.-)[ \t\r]*$")
                if name == "content-length" then
                    if length and length ~= value then
                        return fail(req, "network", "conflicting Content-Length headers")
                    end
                    length = value
                elseif name == "transfer-encoding" then
                    -- No other coding was asked for (TE is never sent).
                    if lower(value) ~= "chunked" then
                        return fail(req, "network", "unsupported Transfer-Encoding in the response")
                    end
                    chunked = true
                elseif name == "connection" then
                    if find(lower(value), "close", 1, true) then
                        close = true
                    end
                elseif name == "retry-after" then
                    req.retry_after = value
                elseif name == "content-type" then
                    req.content_type = value
                end
            end
        end
        pos = eol + 1
    end
    return true, length, chunked, close
end

-- ---- response: body ----------------------------------------------------------------

local function too_large(self, req)
    return fail(req, "too_large", string.format("response body larger than max_response_bytes (%d)",
        self.max_response_bytes))
end

-- Appends bytes to the body pieces, minding the cap. Returns false after
-- fail() when the body outgrows it.
local function take(self, req, pieces, data)
    local size = req.body_size + #data
    local max = self.max_response_bytes
    if max > 0 and size > max then
        return too_large(self, req)
    end
    pieces[#pieces + 1] = data
    req.body_size = size
    return true
end

-- A body of `length` bytes; `rest` is what arrived with the head.
-- Returns body, extra (bytes beyond it arrived) or nil after fail().
local function read_length(self, sock, req, rest, length)
    local max = self.max_response_bytes
    if max > 0 and length > max then
        return nil, too_large(self, req)
    end
    if #rest >= length then
        req.body_size = length
        if #rest == length then
            return rest, false
        end
        return sub(rest, 1, length), true
    end
    local pieces = {}
    if rest ~= "" then
        pieces[1] = rest
    end
    local got = #rest
    while got < length do
        -- Never past the body: whatever follows is not read.
        local want = length - got
        local data, err = read_some(sock, req, want < READ_MAX and want or READ_MAX)
        if not data then
            req.body_size = got
            return nil, io_failure(req, err, "receiving the response body")
        end
        pieces[#pieces + 1] = data
        got = got + #data
    end
    req.body_size = got
    return concat(pieces), false
end

-- A body that ends when the server closes the connection.
local function read_to_close(self, sock, req, rest)
    local pieces = {}
    if rest ~= "" and not take(self, req, pieces, rest) then
        return nil
    end
    while true do
        local data, err = read_some(sock, req, READ_MAX)
        if not data then
            if err == "closed" then
                return concat(pieces)
            end
            return nil, io_failure(req, err, "receiving the response body")
        end
        if not take(self, req, pieces, data) then
            return nil
        end
    end
end

-- The next line of a chunked body from the reader st = { buf, pos } (more
-- arriving on sock as needed), without its end; nil after fail(). Only its
-- first MAX_CHUNK_LINE bytes are kept: the rest of a long line is a chunk
-- extension or trailer, which nobody reads (libcurl skips them whatever
-- their length too), so it is dropped as it arrives.
local function chunk_line(sock, req, st)
    local head
    while true do
        local buf, pos = st.buf, st.pos
        local eol = find(buf, "\n", pos, true)
        if eol then
            st.pos = eol + 1
            return head or sub(buf, pos, byte(buf, eol - 1) == 13 and eol - 2 or eol - 1)
        end
        if not head and #buf - pos >= MAX_CHUNK_LINE then
            head = sub(buf, pos, pos + MAX_CHUNK_LINE - 1)
        end
        local data, err = read_some(sock, req, READ_MAX)
        if not data then
            return nil, io_failure(req, err, "receiving the response body")
        end
        st.buf = head and data or sub(buf, pos) .. data
        st.pos = 1
    end
end

-- The size a chunk-size line gives (extensions after ";" ignored), or nil.
local function chunk_size(size_line)
    local hex = match(size_line, "^%s*(%x+)%s*[;]?")
    return hex and #hex <= 12 and tonumber(hex, 16) or nil
end

-- Appends the `size` bytes of one chunk's data to pieces: what the reader
-- holds, then reads. `total`: the body bytes before this chunk. Returns
-- true, or false after fail().
local function chunk_data(sock, req, st, pieces, size, total)
    local buf, pos = st.buf, st.pos
    local have = #buf - pos + 1
    if have >= size then
        pieces[#pieces + 1] = sub(buf, pos, pos + size - 1)
        st.pos = pos + size
        return true
    end
    if have > 0 then
        pieces[#pieces + 1] = sub(buf, pos)
    end
    local need = size - have
    while need > 0 do
        local data, err = read_some(sock, req, need < READ_MAX and need or READ_MAX)
        if not data then
            req.body_size = total + size - need
            return io_failure(req, err, "receiving the response body")
        end
        pieces[#pieces + 1] = data
        need = need - #data
    end
    st.buf, st.pos = "", 1
    return true
end

-- Trailers, up to the blank line: read and dropped, as many as come before
-- the deadline. Returns true, or false after fail().
local function skip_trailers(sock, req, st)
    repeat
        local l = chunk_line(sock, req, st)
        if not l then
            return false
        end
    until l == ""
    return true
end

-- A chunked body; `buf` is what arrived with the head. Returns body, extra
-- (bytes beyond it arrived), or nil after fail().
local function read_chunked(self, sock, req, buf)
    local st = { buf = buf, pos = 1 }
    local pieces = {}
    local max = self.max_response_bytes
    local total = 0
    while true do
        local size_line = chunk_line(sock, req, st)
        if not size_line then
            return nil
        end
        local size = chunk_size(size_line)
        if not size then
            return nil, fail(req, "network", "malformed chunked body")
        end
        if size == 0 then
            if not skip_trailers(sock, req, st) then
                return nil
            end
            req.body_size = total
            return concat(pieces), st.pos <= #st.buf
        end
        if max > 0 and total + size > max then
            return nil, too_large(self, req)
        end
        if not chunk_data(sock, req, st, pieces, size, total) then
            return nil
        end
        total = total + size
        req.body_size = total
        -- The line end after the data.
        local l = chunk_line(sock, req, st)
        if l == nil then
            return nil
        elseif l ~= "" then
            return nil, fail(req, "network", "malformed chunked body")
        end
    end
end

-- The response to req on sock, from its first bytes `buf` on: sets
-- req.status and req.body (and the fields parse_headers sets). Returns
-- true, keep (the connection may serve another exchange), or false after
-- fail().
function M.read_response(self, sock, req, buf)
    local status, minor, from, stop
    status, minor, buf, from, stop = read_head(sock, req, buf)
    if not status then
        return false
    end
    req.status = status
    local parsed, length, chunked, close = parse_headers(req, buf, from, stop)
    if not parsed then
        return false
    end
    local rest = stop <= #buf and sub(buf, stop) or ""
    local body, extra
    if status == 204 or status == 304 then
        body, extra = "", rest ~= ""
    elseif chunked then
        body, extra = read_chunked(self, sock, req, rest)
    elseif length then
        local n = match(length, "^%d+$") and tonumber(length)
        if not n then
            return fail(req, "network", "bad Content-Length in the response")
        end
        body, extra = read_length(self, sock, req, rest, n)
    else
        close = true
        body = read_to_close(self, sock, req, rest)
    end
    if not body then
        return false
    end
    req.body = body
    return true, not (close or extra or minor == "0")
end

return M
