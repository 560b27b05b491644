-- Batch lookup: POST /v1/sites/{site}/consent/lookup with 100 random pre-filled ids.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "common.lua")

local path, headers
local IDS = 100

function init(args)
   common_init(args)
   path = "/v1/sites/" .. opts.site .. "/consent/lookup"
   headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. opts.key }
end

function request()
   local ids = {}
   for i = 1, IDS do ids[i] = '"' .. known_subject() .. '"' end
   return wrk.format("POST", path, headers, '{"subject_ids":[' .. table.concat(ids, ",") .. "]}")
end
