--- What the API itself refuses in a create or update, checked before
-- sending: for a dry run that flags the records the real run would fail.
--
-- The library checks the arguments' types and shapes (`client:check`);
-- these are the API's own rules on the values: an email address's syntax,
-- an E.164 phone number, the metadata keys' length, the body's size; and,
-- across the records of one file, an email or phone that two records
-- claim (the second would fail with "already in use").
-- @module passage.cli.server_checks
local server_checks = {}

--- The largest request body the API takes, in bytes.
server_checks.MAX_BODY_BYTES = 1024 * 1024
local MAX_EMAIL_BYTES, MAX_LOCAL_BYTES, MAX_LABEL_BYTES = 254, 64, 63
local MAX_METADATA_KEY_BYTES = 128

local LOCAL_PART = "^[%w%.!#%$%%&'%*%+/=%?%^_`{|}~%-]+$"

local function domain_ok(domain)
    local labels, last = 0, nil
    for label in (domain .. "."):gmatch("([^.]*)%.") do
        if label == "" or #label > MAX_LABEL_BYTES or not label:find("^[%w%-]+$")
            or label:find("^%-") or label:find("%-$") then
            return false
        end
        labels, last = labels + 1, label
    end
    return labels >= 2 and last:find("^%a%a+$") ~= nil
end

--- Whether the API takes an email address.
-- @tparam string email
-- @treturn bool
function server_checks.email_ok(email)
    if #email > MAX_EMAIL_BYTES then
        return false
    end
    local local_part, domain = email:match("^(.+)@([^@]+)$")
    if not local_part or #local_part > MAX_LOCAL_BYTES or not local_part:find(LOCAL_PART)
        or local_part:find("^%.") or local_part:find("%.$") or local_part:find("%.%.") then
        return false
    end
    return domain_ok(domain)
end

--- Whether the API takes a phone number: E.164, "+" and 7 to 15 digits,
-- the first not 0.
-- @tparam string phone
-- @treturn bool
function server_checks.phone_ok(phone)
    return phone:find("^%+[1-9]%d+$") ~= nil and #phone >= 8 and #phone <= 16
end

-- The fields of a create or update request that the API checks.
local function field_problem(req, is_update)
    if req.email ~= nil and (req.email ~= "" or is_update)
        and not server_checks.email_ok(req.email:lower()) then
        return "email: not a valid email address"
    end
    if req.phone ~= nil and (req.phone ~= "" or is_update)
        and not server_checks.phone_ok(req.phone) then
        return "phone: not a valid E.164 number"
    end
    for key in pairs(req.user_metadata or {}) do
        if #key == 0 or #key > MAX_METADATA_KEY_BYTES then
            return string.format("user_metadata: a key must be 1 to %d bytes",
                MAX_METADATA_KEY_BYTES)
        end
    end
end

--- A checker for the records of one file.
-- @treturn function `check(call, request, line_no)`: nil, or what the API
--   would refuse in the call (`request` as `client:check` returns it)
function server_checks.new()
    local claimed = {} -- "email:x" / "phone:+1..." -> the line that claims it
    return function(call, request, line_no)
        local op = call[1]
        if op ~= "create_user" and op ~= "update_user" then
            return nil
        end
        local req = op == "create_user" and call[3] or call[4]
        local problem = field_problem(req, op == "update_user")
        if problem then
            return problem
        end
        if type(request.body) == "string" and #request.body > server_checks.MAX_BODY_BYTES then
            return string.format("request body larger than %d bytes",
                server_checks.MAX_BODY_BYTES)
        end
        for _, field in ipairs { "email", "phone" } do
            local value = req[field]
            if value and value ~= "" then
                local key = field .. ":" .. (field == "email" and value:lower() or value)
                local first = claimed[key]
                if first then
                    return string.format("%s: already used by line %d of this file", field, first)
                end
                claimed[key] = line_no
            end
        end
    end
end

return server_checks
