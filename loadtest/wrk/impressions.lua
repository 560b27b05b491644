-- Impressions: POST /v1/sites/{site}/impressions, one fresh showing per request, or
-- SHOWINGS of them as `{"impressions": [...]}` when a script sets it before loading this.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "common.lua")

local path, headers

function init(args)
   common_init(args)
   path = "/v1/sites/" .. opts.site .. "/impressions"
   headers = { ["Content-Type"] = "application/json", ["Origin"] = opts.origin }
end

local function showing()
   return string.format(
      '{"impression_id":"%s","subject_id":"%s","policy_version":1,"surface":"banner"}',
      event_id(), fresh_subject())
end

function request()
   if not SHOWINGS then
      return wrk.format("POST", path, headers, showing())
   end
   local shown = {}
   for i = 1, SHOWINGS do
      shown[i] = showing()
   end
   return wrk.format("POST", path, headers, '{"impressions":[' .. table.concat(shown, ",") .. "]}")
end
