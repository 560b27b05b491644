-- Batch ingest: POST /v1/sites/{site}/events with {"events": [10 fresh events]}.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "common.lua")

local path, headers
local BATCH = 10
local ACTIONS = { "accept_all", "reject_all" }

function init(args)
   common_init(args)
   path = "/v1/sites/" .. opts.site .. "/events"
   headers = { ["Content-Type"] = "application/json", ["Origin"] = opts.origin }
end

function request()
   local events = {}
   for i = 1, BATCH do
      events[i] = string.format(
         '{"event_id":"%s","subject_id":"%s","policy_version":1,"action":"%s"}',
         event_id(), fresh_subject(), ACTIONS[i % 2 + 1])
   end
   return wrk.format("POST", path, headers, '{"events":[' .. table.concat(events, ",") .. "]}")
end
