-- Inside a private nginx of the specs: serves named scenarios on a
-- content_by_lua location. The spec POSTs { scenario = name, ... } as JSON
-- (support.scenario_nginx); the scenario's result comes back as JSON, a
-- raise as a 500 with the message.
local cjson = require("cjson").new()

-- luacheck: globals ngx

return function(scenarios)
  ngx.req.read_body()
  local p = cjson.decode(ngx.req.get_body_data() or "{}")
  local f = scenarios[p.scenario]
  if not f then
    ngx.status = 404
    return ngx.print(cjson.encode({ error = "no scenario " .. tostring(p.scenario) }))
  end
  local ok, result = pcall(f, p)
  if not ok then
    ngx.status = 500
    return ngx.print(cjson.encode({ error = tostring(result) }))
  end
  ngx.print(cjson.encode(result))
end
