-- Single-event ingest: POST /v1/sites/{site}/events, one fresh event per request.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "common.lua")

local path, headers

function init(args)
   common_init(args)
   path = "/v1/sites/" .. opts.site .. "/events"
   headers = { ["Content-Type"] = "application/json", ["Origin"] = opts.origin }
end

function request()
   local body = string.format(
      '{"event_id":"%s","subject_id":"%s","policy_version":1,"action":"accept_all"}',
      event_id(), fresh_subject())
   return wrk.format("POST", path, headers, body)
end
