-- Impressions in batches: POST /v1/sites/{site}/impressions with 10 fresh showings of 10
-- subjects, `{"impressions": [...]}` (what a queue flushed after a time offline sends).
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "common.lua")

local path, headers

function init(args)
   common_init(args)
   path = "/v1/sites/" .. opts.site .. "/impressions"
   headers = { ["Content-Type"] = "application/json", ["Origin"] = opts.origin }
end

function request()
   local shown = {}
   for i = 1, 10 do
      shown[i] = string.format(
         '{"impression_id":"%s","subject_id":"%s","policy_version":1,"surface":"banner"}',
         event_id(), fresh_subject())
   end
   return wrk.format("POST", path, headers, '{"impressions":[' .. table.concat(shown, ",") .. ']}')
end
