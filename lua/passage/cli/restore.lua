--- Records matched to users by identifier: `import --restore` (an export
-- read back into any app) and `--on-exists` (what to do with a user that
-- is already there).
--
-- A record's user is found by its email, else its phone, never by its
-- `id` (ids belong to the app the export came from). A user that is not
-- there is created with the record's email, phone and metadata; with
-- `--restore` it is then given the record's `status` (a deactivated user
-- ends deactivated; "pending" cannot be set through the API, and the
-- result line says so in a `note`). A user that is there is, by `--on-exists`: `skip`ped
-- (nothing sent but the lookup), `update`d with the record's fields (and
-- status), or counted as a `fail`ure. Each record runs as a chain of calls
-- in one slot of the run (`step`), so a restore keeps its calls in flight.
-- @module passage.cli.restore
local calls = require "passage.cli.calls"
local records = require "passage.cli.records"

local restore = {}

--- What `--on-exists` takes.
restore.ON_EXISTS = { "skip", "update", "fail" }

-- The call that gives a created or updated user the record's status.
local STATUS_CALL = { active = "activate_user", inactive = "deactivate_user" }

local function done(entry, call, value, err, action, wanted)
    local line = calls.result_line(call, { value = value, err = err })
    if line.ok then
        line.action = action
        -- No operation sets "pending": say so rather than claim a restore.
        if wanted and line.user_status and wanted ~= line.user_status then
            line.note = string.format("status %s cannot be set through the API", wanted)
        end
    end
    entry.result = line
end

--- The entry of a record, for `passage.cli.runner`.
-- @tparam string app_id
-- @tparam table rec the record
-- @tparam table opts `on_exists` ("skip", "update" or "fail"), `status`
--   (true: give the user the record's status)
-- @return an entry with `call` and `step`, or nil and an input error
function restore.entry(app_id, rec, opts)
    local req = records.request(rec)
    if req.email == "" then
        req.email = nil
    end
    if req.phone == "" then
        req.phone = nil
    end
    local identifier = req.email or req.phone
    if type(identifier) ~= "string" then
        return nil, "no email or phone to find the user by"
    end
    local wanted = opts.status and type(rec.status) == "string" and rec.status or nil
    local want = STATUS_CALL[wanted] and wanted or nil
    local entry = { call = { "get_user_by_identifier", app_id, identifier } }
    local phase, action = "lookup", nil

    local function give_status(user)
        if want and user.status ~= want then
            phase = "status"
            return { STATUS_CALL[want], app_id, user.id }
        end
        return nil
    end

    function entry.step(value, err)
        local call = entry.call
        if phase == "lookup" then
            if err and err.kind == "not_found" then
                phase, action = "write", "created"
                return { "create_user", app_id, req }
            elseif err then
                return done(entry, call, nil, err)
            elseif opts.on_exists == "skip" then
                return done(entry, call, value, nil, "skipped")
            elseif opts.on_exists == "update" then
                phase, action = "write", "updated"
                return { "update_user", app_id, value.id, req }
            end
            entry.result = { ok = false, kind = "exists", id = value.id,
                message = "a user with this identifier exists (--on-exists skip or update)" }
            return nil
        elseif phase == "write" and not err then
            local next_call = give_status(value)
            if next_call then
                return next_call
            end
        end
        return done(entry, call, value, err, action, phase ~= "lookup" and wanted)
    end
    return entry
end

return restore
