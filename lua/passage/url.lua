-- Percent-encoding of list query values (path segments are encoded by
-- passage.core's path, in C). A query value keeps RFC 3986 unreserved
-- characters and also ":" "@" and ",", because filter operators and
-- order_by are written that way on the wire ("login_count=gt:3",
-- "order_by=id:DESC,created_at:ASC").
local url = {}

local function escape_byte(c)
    return string.format("%%%02X", c:byte())
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
