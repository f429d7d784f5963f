--- A one-line progress bar on stderr: count, total, rate and time left.
--
-- Drawn only when stderr is a terminal (and not turned off); otherwise
-- every method does nothing, so piped or logged stderr gets no bar. The
-- line is redrawn in place (carriage return, erase to the end of the line)
-- at most ten times a second, and `finish` leaves it complete, followed by
-- a line break.
-- @module passage.cli.progress
local filters = require "passage.filters"
local output = require "passage.cli.output"
local signals = require "passage.cli.signals"

local progress = {}

local ok_socket, socket = pcall(require, "socket")
local now = ok_socket and socket.gettime or os.time

local ok_term, term = pcall(require, "term")

--- Whether a file (io.stdout, io.stderr) is a terminal.
-- @param file
-- @treturn boolean
function progress.isatty(file)
    return ok_term and term.isatty(file) or false
end

local BAR_WIDTH = 24
local REDRAW_SECONDS = 0.1

local Bar = {}
Bar.__index = Bar

-- A count as a server could send it: a whole number that fits, or not
-- one at all (1e300, 2.5, NaN), which is never drawn.
local function sane_count(n)
    return filters.is_whole(n) and n >= 0
end

local function thousands(n)
    if not sane_count(n) then
        return "?"
    end
    local digits = string.format("%d", math.floor(n))
    local head = (#digits - 1) % 3 + 1
    return digits:sub(1, head) .. digits:sub(head + 1):gsub("%d%d%d", ",%0")
end

local function duration(seconds)
    seconds = math.floor(seconds + 0.5)
    if seconds < 60 then
        return seconds .. "s"
    elseif seconds < 3600 then
        return string.format("%dm%02ds", math.floor(seconds / 60), seconds % 60)
    end
    return string.format("%dh%02dm", math.floor(seconds / 3600), math.floor(seconds % 3600 / 60))
end

--- A new bar.
-- @tparam table opts `label` (the text before the bar), `unit` (what is
--   counted, as "users"), `enabled` (false: draw nothing)
-- @return a bar with `update(done, total)` and `finish()`
function progress.new(opts)
    return setmetatable({
        label = opts.label,
        unit = opts.unit,
        enabled = opts.enabled ~= false and progress.isatty(io.stderr),
        stdout_is_terminal = progress.isatty(io.stdout),
        visible = false,
        started = now(),
        drawn_at = nil,
        done = 0,
        total = nil,
    }, Bar)
end

-- The terminal's width (stderr's), or 80 when it cannot be told.
local function terminal_width()
    local uv = signals.uv
    if uv then
        local ok, tty = pcall(uv.new_tty, 2, false)
        if ok and tty then
            local width = tty:get_winsize()
            tty:close()
            if type(width) == "number" and width > 0 then
                return width
            end
        end
    end
    return tonumber(os.getenv("COLUMNS")) or 80
end

-- The line to draw, made to fit the terminal: without the bar when it is
-- too narrow, then cut (a line that wraps could not be redrawn in place).
function Bar:fitted()
    local width = terminal_width() - 1
    local text = self:line()
    if #text > width then
        text = self:line(true)
    end
    return text:sub(1, math.max(width, 1))
end

function Bar:line(no_bar)
    local elapsed = now() - self.started
    local rate = elapsed > 0 and self.done / elapsed or 0
    local parts = { self.label }
    local total = self.total
    if total and total > 0 then
        local fraction = math.min(1, self.done / total)
        local filled = math.floor(fraction * BAR_WIDTH + 0.5)
        if not no_bar then
            parts[#parts + 1] = "[" .. ("#"):rep(filled) .. ("."):rep(BAR_WIDTH - filled) .. "]"
        end
        parts[#parts + 1] = string.format("%s/%s %s %3d%%", thousands(self.done),
            thousands(total), self.unit, math.floor(fraction * 100))
    else
        parts[#parts + 1] = thousands(self.done) .. " " .. self.unit
    end
    if elapsed > 0 then
        parts[#parts + 1] = thousands(math.floor(rate + 0.5)) .. "/s"
    end
    if self.finished then
        parts[#parts + 1] = "in " .. duration(elapsed)
    elseif total and rate > 0 and self.done < total then
        parts[#parts + 1] = "ETA " .. duration((total - self.done) / rate)
    end
    return table.concat(parts, " ")
end

--- Sets the count (and the total, when known) and redraws when due.
-- @tparam number done
-- @tparam[opt] number total
function Bar:update(done, total)
    self.done = done
    if total ~= nil and sane_count(total) then
        self.total = total
    end
    if not self.enabled then
        return
    end
    local t = now()
    if self.drawn_at and t - self.drawn_at < REDRAW_SECONDS then
        return
    end
    self.drawn_at = t
    self.visible = true
    output.err("\r" .. self:fitted() .. "\27[K")
end

--- Erases the bar before a line goes to stdout, when stdout is the same
-- terminal (the next update draws it again).
function Bar:clear()
    if self.visible and self.stdout_is_terminal then
        output.err("\r\27[K")
        self.visible = false
    end
end

--- Draws the last state and ends the line.
function Bar:finish()
    if not self.enabled or self.finished then
        return
    end
    self.finished = true
    output.err("\r" .. self:fitted() .. "\27[K\n")
end

return progress
