-- Percent-encoding for the two places user input enters a URL.
--
-- A path segment keeps only RFC 3986 unreserved characters other than ".",
-- so an id such as "../x", "a/b?c" or ".." can never change the path: libcurl
-- removes literal dot segments, %2E it leaves alone. A query value also keeps
-- ":" "@" and "," literal, because filter operators and order_by are written
-- that way on the wire ("login_count=gt:3", "order_by=id:DESC,created_at:ASC").
local url = {}

local function escape_byte(c)
    return string.format("%%%02X", c:byte())
end

local find, gsub = string.find, string.gsub

function url.segment(s)
    -- Most ids need no escaping: one anchored scan is much cheaper than a
    -- gsub building a copy.
    if find(s, "^[%w%-_~]*$") then
        return s
    end
    return (gsub(s, "[^%w%-_~]", escape_byte))
end

function url.query_value(s)
    return (s:gsub("[^%w%-_~%.:@,]", escape_byte))
end

-- "a=1&b=x%20y" from an array of { name, value } pairs (values are strings).
function url.query(pairs_list)
    local parts = {}
    for i = 1, #pairs_list do
        local p = pairs_list[i]
        parts[i] = p[1] .. "=" .. url.query_value(p[2])
    end
    return table.concat(parts, "&")
end

return url
