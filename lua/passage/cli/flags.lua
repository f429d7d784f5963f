--- Options that several commands share, each declared once: filters (the
-- fields of `passage.filters`), `--where`, `--in-flight`, the fields of a
-- user request, `--csv-raw` and the list parameters.
-- @module passage.cli.flags
local restore = require "passage.cli.restore"
local where = require "passage.cli.where"

local flags = {}

--- `--identifier`, `--status`, ...: one option per filter field.
function flags.filters(cmd)
    for _, field in ipairs(where.FIELDS) do
        local flag = "--" .. field:gsub("_", "-")
        cmd:option(flag):argname("<[op:]value>"):description("filter on " .. field)
    end
end

--- `--where field=[op:]value`, repeatable.
function flags.where(cmd)
    cmd:option("--where"):count("*"):argname("<field=[op:]value>")
        :description("a filter; repeat for more (fields: " .. table.concat(where.FIELDS, ", ") .. ")")
end

--- `--in-flight n` (the library checks the value).
function flags.in_flight(cmd, default, what)
    cmd:option("--in-flight"):argname("<n>"):default(tostring(default))
        :convert(tonumber):description(what)
end

--- The fields of a create or update request.
function flags.user_fields(cmd)
    cmd:option("--email"):description("email address")
    cmd:option("--phone"):description("phone number, E.164 (+14155552671)")
    cmd:option("--metadata"):count("*"):argname("<key=value>")
        :description("a user_metadata string; repeat for more")
    cmd:option("--metadata-json"):argname("<object>")
        :description("user_metadata as a JSON object (numbers, booleans)")
end

--- `--csv-raw`.
function flags.csv_raw(cmd, what)
    cmd:flag("--csv-raw"):description(what)
end

--- The parameters of a listing: filters, `--where`, order, page, limit.
function flags.list_params(cmd)
    flags.filters(cmd)
    flags.where(cmd)
    cmd:option("--order-by"):argname("<field:ASC|DESC,...>")
    cmd:option("--limit"):argname("<n>"):convert(tonumber):description("users per page (1..500)")
    cmd:option("--page"):argname("<n>"):convert(tonumber)
    cmd:option("--created-before"):argname("<unix seconds>"):convert(tonumber)
end

--- `--on-exists` and `--restore`.
function flags.restore(cmd)
    cmd:flag("--restore"):description("read an export back: find each user by email (else "
        .. "phone), ignore ids, create the missing ones with their metadata and status")
    cmd:option("--on-exists"):choices(restore.ON_EXISTS)
        :description("for a user that already exists: skip, update or fail (default with "
            .. "--restore: fail); without --restore, for records that create users")
end

return flags
