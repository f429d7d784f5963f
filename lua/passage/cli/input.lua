--- The lines of an input file, stdin (`-`), a pipe, a FIFO or a terminal,
-- with bounded memory.
--
-- A line longer than `MAX_LINE_BYTES` is not kept: it is read past and
-- handed over as a `too_long` marker, an input error for that line. A NUL
-- byte ends the input with an error (it is not text: `/dev/zero`, a binary
-- file). Regular files (and devices that never block) are read with Lua's
-- io; pipes, FIFOs and terminals, when lua-luv is there, are read through
-- libuv, so that waiting for input can be cut short by a signal and the
-- calls in flight keep moving meanwhile.
-- @module passage.cli.input
local signals = require "passage.cli.signals"

local input = {}

--- The longest line read, in bytes (1 MiB).
input.MAX_LINE_BYTES = 1024 * 1024

local CHUNK_BYTES = 64 * 1024
-- A stream is paused once this much is read and not yet taken.
local STREAM_BUFFER_BYTES = 1024 * 1024
-- O_NONBLOCK on Linux: a FIFO opens without waiting for a writer.
local O_NONBLOCK = 2048

local Reader = {}
Reader.__index = Reader

--- What `Reader:line` returns for a line over the cap (a table, so it is
-- told apart from any text).
-- @table too_long
-- @field bytes how long the line was
-- @field message the input error

-- A source of chunks from a Lua file: never waits long.
local function file_chunks(file)
    return {
        next = function()
            return file:read(CHUNK_BYTES)
        end,
        close = function()
            if file ~= io.stdin then
                file:close()
            end
        end,
    }
end

-- A source of chunks from a libuv stream (pipe, FIFO, terminal). While
-- nothing has come, `idle` runs (it drives the calls in flight), or the
-- loop waits for input or a signal.
local function stream_chunks(reader, stream)
    local uv = signals.uv
    local chunks, buffered, ended, failure, paused = {}, 0, false, nil, false
    local function on_read(err, data)
        if err then
            failure, ended = err, true
        elseif data then
            chunks[#chunks + 1] = data
            buffered = buffered + #data
            if buffered >= STREAM_BUFFER_BYTES and not paused then
                paused = true
                stream:read_stop()
            end
        else
            ended = true
        end
    end
    stream:read_start(on_read)
    return {
        next = function()
            -- Every look at the signals or the calls in flight runs the
            -- loop too, and may bring the data (or the end) in: so the
            -- state is checked again right before a wait that blocks.
            while not chunks[1] and not ended do
                if signals.count() > 0 then
                    reader.stopped = true
                    return nil
                end
                local busy = reader.idle and reader.idle()
                if chunks[1] or ended then
                    break
                end
                uv.run(busy and "nowait" or "once")
            end
            if failure then
                reader.failure = "read: " .. tostring(failure)
                return nil
            end
            local data = table.remove(chunks, 1)
            if data then
                buffered = buffered - #data
                if paused and buffered < STREAM_BUFFER_BYTES / 2 then
                    paused = false
                    stream:read_start(on_read)
                end
            end
            return data
        end,
        close = function()
            if not stream:is_closing() then
                stream:close()
            end
        end,
    }
end

local function open_stream(reader, fd, kind)
    local uv = signals.uv
    local stream = kind == "tty" and uv.new_tty(fd, true) or uv.new_pipe(false)
    if kind ~= "tty" then
        local ok, err = stream:open(fd)
        if not ok then
            return nil, tostring(err)
        end
    end
    reader.source = stream_chunks(reader, stream)
    return reader
end

-- Opens `path` ("-" for stdin) into `reader`; returns it or nil, message.
local function open_source(reader, path)
    local uv = signals.uv
    if path == "-" then
        local kind = uv and uv.guess_handle(0)
        if kind == "pipe" or kind == "tty" then
            return open_stream(reader, 0, kind)
        end
        reader.source = file_chunks(io.stdin)
        return reader
    end
    local stat = uv and uv.fs_stat(path)
    if stat and stat.type == "directory" then
        return nil, path .. ": is a directory"
    end
    if stat and stat.type ~= "file" then
        local fd, err = uv.fs_open(path, O_NONBLOCK, 0)
        if not fd then
            return nil, tostring(err)
        end
        local kind = uv.guess_handle(fd)
        if kind == "pipe" or kind == "tty" then
            return open_stream(reader, fd, kind)
        end
        uv.fs_close(fd)
    end
    local file, err = io.open(path, "rb")
    if not file then
        return nil, tostring(err)
    end
    reader.regular = stat == nil or stat.type == "file"
    reader.source = file_chunks(file)
    return reader
end

--- Opens an input.
-- @tparam string path a file, or "-" for stdin
-- @return a reader (`regular` is true for a regular file, which can be read
--   twice), or nil and a message
function input.open(path)
    local reader = setmetatable({ buffer = "", at = 1, regular = false }, Reader)
    return open_source(reader, path)
end

-- Takes the next chunk into the buffer; false at the end (or a stop).
function Reader:fill()
    local chunk = self.source.next()
    if chunk == nil or chunk == "" then
        return false
    end
    if chunk:find("\0", 1, true) then
        self.failure = "a NUL byte in the input: it is not a text file"
        return false
    end
    self.buffer = self.buffer:sub(self.at) .. chunk
    self.at = 1
    return true
end

-- Reads past the rest of a line over the cap; returns the marker.
function Reader:skip_long_line(seen)
    while true do
        local newline = self.buffer:find("\n", self.at, true)
        if newline then
            seen = seen + newline - self.at
            self.at = newline + 1
            break
        end
        seen = seen + #self.buffer - self.at + 1
        self.buffer, self.at = "", 1
        if not self:fill() then
            break
        end
    end
    return { bytes = seen, message = string.format(
        "line longer than %d bytes (%d bytes): not read", input.MAX_LINE_BYTES, seen) }
end

--- The next line, without its line break; a `too_long` table for a line
-- over the cap; nil at the end (then `failure` holds a read error, or
-- `stopped` is true when a signal ended the wait).
-- @return string, table or nil
function Reader:line()
    while true do
        local newline = self.buffer:find("\n", self.at, true)
        if newline then
            if newline - self.at > input.MAX_LINE_BYTES then
                local bytes = newline - self.at
                self.at = newline + 1
                return { bytes = bytes, message = string.format(
                    "line longer than %d bytes (%d bytes): not read", input.MAX_LINE_BYTES, bytes) }
            end
            local text = self.buffer:sub(self.at, newline - 1)
            self.at = newline + 1
            return text
        end
        local pending = #self.buffer - self.at + 1
        if pending > input.MAX_LINE_BYTES then
            return self:skip_long_line(0)
        end
        if not self:fill() then
            if self.failure or self.stopped or pending == 0 then
                return nil
            end
            local text = self.buffer:sub(self.at)
            self.buffer, self.at = "", 1
            return text
        end
    end
end

--- The reader's lines as a function for a generic `for` (as `file:lines()`).
-- @treturn function
function Reader:lines()
    return function()
        return self:line()
    end
end

--- Closes the input (stdin stays open).
function Reader:close()
    self.source.close()
end

return input
