-- Files for the specs.
local M = {}

-- The whole file at path, or nil and io.open's message.
function M.read(path)
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local text = f:read("*a")
    f:close()
    return text
end

return M
