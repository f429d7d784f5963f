--- Failures: the `err` of every `nil, err` return, and bad arguments.
--
-- A runtime failure (the API answered with an error, the network failed,
-- the answer was not what the spec says) is returned as `nil, err`, where
-- `err` is a table with the stable fields of `err` and a `__tostring`, so
-- a script can branch on `err.kind`, `err.status` or `err.code` and still
-- print it. It comes from a client's operation, `Handle:result`,
-- `Client:bulk`'s results, `passage.paginator.collect`, or is raised inside
-- a `passage.paginator` loop (a loop cannot carry `nil, err`).
--
-- A bad argument (a wrong type, an empty id, an unknown option or filter)
-- is not returned: it raises at once, before any request, with a string
-- message starting `passage.users:` that points at the line that called
-- the library.
--
-- The API key is never part of an error, nor of its printed form: nothing
-- here sees request headers, and a key a server echoes back in its text is
-- replaced by `[REDACTED]`. Scripts do not require this module.
-- @module passage.errors
-- @usage
-- local user, err = client:get_user(app_id, user_id)
-- if not user then
--     print(err)  --> passage get_user: HTTP 404 user_not_found: User not found
--     if err.kind == "http" and err.status == 404 then ... end
-- end
local errors = {}

--- The fields of an error. `tostring(err)` gives one line: `passage`, the
-- operation, then `HTTP <status> <code>: <message>` for kind `"http"`
-- (the start of `body` when there is no message), else the kind, the
-- status if any and the message, and `(after N attempts)` when there were
-- more than one.
-- @table err
-- @tfield string kind what failed: one of `kinds`
-- @tfield[opt] int status the HTTP status, when there was one (a
-- `"decode"` error of a 2xx answer has it too)
-- @tfield[opt] string code Passage's error code (`"user_not_found"`,
-- `"invalid_request"`, ...), an open set
-- @tfield[opt] string message the server's `error` text, or what went wrong
-- locally
-- @tfield[opt] string body the raw response body when it was not JSON (a
-- proxy's HTML 502 page); the printed form shows its start
-- @tfield[opt] int attempts how many attempts were made
-- @tfield[opt] string operation the call that failed (`"get_user"`, ...;
-- `"paginator"` for a walk's `"changed"`)
-- @tfield[opt] number retry_after the seconds the server asked to wait
-- (`Retry-After`), when it said so

--- The kinds of failure (`err.kind`), and which are retried.
--
-- A failure worth another attempt (transient) is retried, within
-- `max_attempts` and `timeout_ms` (see @{passage.users.options|options}),
-- when the call is safe to repeat, or when not one byte of the request was
-- sent: so `create_user` is never sent twice.
-- @table kinds
-- @field http the API answered with an error status: `status`, and `code`
-- and `message` from its body (`body` when that is not JSON). 429, 502,
-- 503 and 504 are transient; other statuses are final, and redirects are
-- never followed.
-- @field timeout an attempt ran out of time (`attempt_timeout_ms`,
-- `connect_timeout_ms`), or no time was left for another (`timeout_ms`).
-- Transient.
-- @field connect the host could not be resolved or reached (or
-- `base_url` is unusable): nothing was sent. Transient, `create_user`
-- too.
-- @field tls TLS failed: an untrusted or wrong-host certificate. Final.
-- @field network the connection broke: reset, dropped in the middle of the
-- body, a reply that is not HTTP. Transient.
-- @field decode a 2xx answer whose body is not JSON (kept in `body`), or
-- not the shape `passage.schema` describes, or could not be read. Final.
-- @field too_large the body was over `max_response_bytes` (or a header over
-- libcurl's limits). Final.
-- @field cancelled the call was ended by `Handle:cancel`, `Handle:close` or
-- `Client:close`. Final.
-- @field not_found `get_user_by_identifier` found nobody: `code` is
-- `"user_not_found"`, with no status (there was no HTTP error).
-- @field changed `passage.paginator` could not keep a walk exact: more
-- users left the listing behind it at once than it remembers. Restart the
-- walk.

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
-- `response` is a request's response() table, the same fields from either
-- transport (passage.core's libcurl one, passage.cosocket's).
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
-- One style everywhere: a check, however deep, throws with
-- errors.argument; each public function is an errors.guard, which raises
-- the plain message at the line of the script that called it. So no check
-- counts stack levels.

local ArgumentError = {}
ArgumentError.__tostring = function(e)
    return e.message
end

-- Throws a bad-argument error ("passage.users: " .. message).
function errors.argument(fmt, ...)
    error(setmetatable({ message = "passage.users: " .. string.format(fmt, ...) }, ArgumentError))
end

-- The argument error of another module: errors.argument_in("passage.paginator")
-- throws "passage.paginator: " .. message. A message already made by
-- errors.argument keeps its text and takes the new prefix.
function errors.argument_in(module)
    local prefix = module .. ": "
    return function(fmt, ...)
        local message = string.format(fmt, ...):gsub("^passage%.users: ", "")
        error(setmetatable({ message = prefix .. message }, ArgumentError))
    end
end

-- A public entry made of `fn`: an argument error thrown inside `fn` (at any
-- depth) is raised again at the line that called the entry; any other
-- error goes on as it was. One guard for every public function; it passes
-- on up to four results (a generic for's iterator, state, control and
-- closing value), with no table per call.
function errors.guard(fn)
    return function(...)
        local ok, a, b, c, d = pcall(fn, ...)
        if ok then
            return a, b, c, d
        end
        if getmetatable(a) == ArgumentError then
            error(a.message, 2)
        end
        error(a, 0)
    end
end

-- Whether a caught error is the standalone interpreter's Ctrl-C (lua.c
-- and LuaJIT raise "interrupted!" from a hook, wherever the program is):
-- a guard that turns failures into one call's err must let it through, or
-- the Ctrl-C would be taken for that call's failure and lost.
function errors.is_interrupt(v)
    return type(v) == "string" and v:find("interrupted!$") ~= nil
end

-- The message of an argument error caught with pcall, or nil for any other
-- error.
function errors.argument_message(v)
    return getmetatable(v) == ArgumentError and v.message or nil
end

return errors
