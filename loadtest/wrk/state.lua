-- State read: GET /v1/sites/{site}/subjects/s-<random>/consent with the read key.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "common.lua")

local prefix, headers

function init(args)
   common_init(args)
   prefix = "/v1/sites/" .. opts.site .. "/subjects/"
   headers = { ["Authorization"] = "Bearer " .. opts.key }
end

function request()
   return wrk.format("GET", prefix .. known_subject() .. "/consent", headers)
end
