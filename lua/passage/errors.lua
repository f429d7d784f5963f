-- Runtime failures of passage.users: the `err` of every `nil, err` return.
--
-- An error is a plain table with stable fields and a __tostring, so scripts
-- can branch on `err.kind` / `err.status` / `err.code` and still print it:
--   kind      "http" | "timeout" | "connect" | "tls" | "network" | "decode"
--             | "too_large" | "cancelled"
--   status    HTTP status when the server answered (nil otherwise)
--   code      Passage's error code ("user_not_found", ...), an open string
--   message   human text: the server's `error`, or what went wrong locally
--   body      the raw response body when it was not JSON (an HTML 502 page)
--   attempts  how many attempts were made
--   operation the call that failed ("get_user", ...)
--   retry_after  seconds the server asked to wait, when it said so
-- The API key is never part of an error: nothing here sees request headers.
local errors = {}

local Error = {}
Error.__index = Error
errors.Error = Error

-- The longest slice of a non-JSON body kept in the printed form; the whole
-- body stays available in err.body.
local PRINTED_BODY_MAX = 200

local function one_line(s, max)
    s = s:gsub("%s+", " ")
    if #s > max then
        s = s:sub(1, max) .. "..."
    end
    return s
end

function Error:__tostring()
    local parts = { "passage" }
    if self.operation then
        parts[#parts + 1] = " " .. self.operation
    end
    parts[#parts + 1] = ": "
    if self.kind == "http" then
        parts[#parts + 1] = "HTTP " .. tostring(self.status)
        if self.code then
            parts[#parts + 1] = " " .. self.code
        end
        if self.message then
            parts[#parts + 1] = ": " .. self.message
        elseif self.body then
            parts[#parts + 1] = ": " .. one_line(self.body, PRINTED_BODY_MAX)
        end
    else
        parts[#parts + 1] = self.kind
        if self.status then
            parts[#parts + 1] = " (HTTP " .. tostring(self.status) .. ")"
        end
        if self.message then
            parts[#parts + 1] = ": " .. self.message
        end
    end
    if self.attempts and self.attempts > 1 then
        parts[#parts + 1] = " (after " .. self.attempts .. " attempts)"
    end
    return table.concat(parts)
end

-- Builds an error; `fields` is taken over, not copied.
function errors.new(kind, fields)
    fields = fields or {}
    fields.kind = kind
    return setmetatable(fields, Error)
end

function errors.is_error(v)
    return getmetatable(v) == Error
end

-- The error for a finished transfer whose HTTP status is not a success.
-- `response` is the table of passage.core's request:response().
function errors.from_http(response)
    local body = response.body
    local fields = { status = response.status }
    if type(body) == "table" and type(body.code) == "string" then
        fields.code = body.code
        if type(body.error) == "string" then
            fields.message = body.error
        end
    elseif response.raw then
        fields.body = response.raw
    end
    return errors.new("http", fields)
end

-- A server (or a proxy before it) may echo request headers into its error
-- text: every copy of the secret in what the server wrote is replaced, so
-- the key is never in an error whatever the server does. Returns a function
-- of err; the secret lives only in its closure, where no dump of a client,
-- handle or error reaches it.
local REDACTED = "[REDACTED]"
local SERVER_TEXT = { "message", "body", "code" }

local function plain_pattern(s)
    return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

function errors.redactor(secret)
    local forms = { plain_pattern(secret) }
    -- As a JSON string would write it, in a body kept raw.
    local json = secret:gsub('[\\"/]', "\\%0")
    if json ~= secret then
        forms[2] = plain_pattern(json)
    end
    return function(err)
        for _, field in ipairs(SERVER_TEXT) do
            local text = err[field]
            if type(text) == "string" then
                for i = 1, #forms do
                    text = text:gsub(forms[i], REDACTED)
                end
                err[field] = text
            end
        end
        return err
    end
end

-- Bad arguments --------------------------------------------------------
-- Checks deep inside the library throw an ArgumentError; the public entry
-- point catches it and raises a plain message pointing at the script's
-- line, so no check has to count stack levels.

local ArgumentError = {}
ArgumentError.__tostring = function(e)
    return e.message
end

-- Throws a bad-argument error ("passage.users: " .. message).
function errors.argument(fmt, ...)
    error(setmetatable({ message = "passage.users: " .. string.format(fmt, ...) }, ArgumentError))
end

-- Raises `v`, an error caught by pcall, again: a bad-argument error as its
-- message at `level` (1 = the function calling rethrow), anything else as
-- it is.
function errors.rethrow(level, v)
    if getmetatable(v) == ArgumentError then
        error(v.message, level + 1)
    end
    error(v, 0)
end

-- Calls f(...) and returns its one result; a bad-argument error inside it
-- is raised again at `level` (1 = the function calling checked).
function errors.checked(level, f, ...)
    local ok, v = pcall(f, ...)
    if ok then
        return v
    end
    errors.rethrow(level + 1, v)
end

return errors
