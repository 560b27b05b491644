-- Impressions: POST /v1/sites/{site}/impressions, one fresh showing per request.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "common.lua")

local path, headers

function init(args)
   common_init(args)
   path = "/v1/sites/" .. opts.site .. "/impressions"
   headers = { ["Content-Type"] = "application/json", ["Origin"] = opts.origin }
end

function request()
   local body = string.format(
      '{"impression_id":"%s","subject_id":"%s","policy_version":1,"surface":"banner"}',
      event_id(), fresh_subject())
   return wrk.format("POST", path, headers, body)
end
