-- Input checks for create/update bodies. Every failure is a message that starts
-- with the name of the offending field ("email: ..."), which the handler turns
-- into a 400 invalid_request.
local json = require("passage.emulator.json")

local M = {}

local LOCAL_OK = "^[%w%.!#%$%%&'%*%+/=%?%^_`{|}~%-]+$"

-- Pragmatic address check: one "@", a dot-atom local part (<= 64 bytes), a domain
-- of at least two LDH labels with an alphabetic top-level label.
function M.email(s)
  if #s > 254 then return false end
  local loc, dom = s:match("^(.+)@([^@]+)$")
  if not loc or #loc > 64 or not loc:find(LOCAL_OK) then return false end
  if loc:find("^%.") or loc:find("%.$") or loc:find("%.%.") then return false end
  local labels = 0
  local last
  for label in (dom .. "."):gmatch("([^.]*)%.") do
    if label == "" or #label > 63 or not label:find("^[%w%-]+$")
        or label:find("^%-") or label:find("%-$") then
      return false
    end
    labels = labels + 1
    last = label
  end
  return labels >= 2 and last:find("^%a%a+$") ~= nil
end

-- E.164: "+", a non-zero country digit, at most 15 digits in all.
function M.phone(s)
  return s:find("^%+[1-9]%d%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$") ~= nil and #s >= 8
end

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -2^53 and v < 2^53
end
M.is_integer = is_integer

-- user_metadata: a JSON object of scalar values (string, finite number, boolean), like
-- the app's metadata schema whose field types are all scalars. null values are
-- allowed and mean "remove this key" on update.
function M.metadata(v)
  if type(v) ~= "table" then return nil, "user_metadata: must be an object" end
  if next(v) ~= nil and #v > 0 then return nil, "user_metadata: must be an object" end
  for k, val in pairs(v) do
    if type(k) ~= "string" then return nil, "user_metadata: must be an object" end
    if k == "" or #k > 128 or not json.valid_utf8(k) then
      return nil, "user_metadata: invalid key"
    end
    local t = type(val)
    if t == "string" then
      if not json.valid_utf8(val) then
        return nil, "user_metadata." .. k .. ": must be valid UTF-8"
      end
    elseif t == "number" then
      -- JSON reads 1e400 as infinity, which no JSON text can carry back.
      if val ~= val or val == math.huge or val == -math.huge then
        return nil, "user_metadata." .. k .. ": must be a finite number"
      end
    elseif t ~= "boolean" and val ~= json.null then
      return nil, "user_metadata." .. k .. ": must be a string, number, boolean or null"
    end
  end
  return true
end

local ALLOWED = { email = true, phone = true, user_metadata = true }

-- Decodes and checks a create/update body. Returns a table {email=, phone=,
-- user_metadata=, has_metadata=} with email lower-cased, or nil, message.
-- On create an empty string counts as "not given"; on update it is invalid
-- (an identifier cannot be blanked).
function M.user_body(body, is_update)
  if body == nil or body == "" then return nil, "body: must be a JSON object" end
  -- cjson decodes [] and {} alike; only an object literal is acceptable.
  if not body:find("^%s*{") then return nil, "body: must be a JSON object" end
  local v, err = json.decode(body)
  if v == nil then return nil, "body: malformed JSON (" .. tostring(err):sub(1, 80) .. ")" end
  if type(v) ~= "table" or (next(v) ~= nil and #v > 0) then
    return nil, "body: must be a JSON object"
  end
  for k in pairs(v) do
    if type(k) ~= "string" then return nil, "body: must be a JSON object" end
    if not ALLOWED[k] then
      return nil, json.quote_name(k) .. ": unknown field"
    end
  end
  local out = {}
  for _, f in ipairs({ "email", "phone" }) do
    local val = v[f]
    if val ~= nil and val ~= json.null then
      if type(val) ~= "string" then return nil, f .. ": must be a string" end
      if val ~= "" or is_update then
        if f == "email" then
          val = val:lower()
          if not M.email(val) then return nil, "email: must be a valid email address." end
        elseif not M.phone(val) then
          return nil, "phone: must be a valid E164 number."
        end
        out[f] = val
      end
    elseif val == json.null then
      return nil, f .. ": must be a string"
    end
  end
  local md = v.user_metadata
  if md ~= nil then
    if md ~= json.null then
      local ok, merr = M.metadata(md)
      if not ok then return nil, merr end
    end
    out.user_metadata = md
    out.has_metadata = true
  end
  if not is_update and not out.email and not out.phone then
    return nil, "identifier: email or phone is required"
  end
  return out
end

return M
