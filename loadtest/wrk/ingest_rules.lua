-- Single-event ingest under jurisdiction rules: ingest.lua's events, posted to the rules
-- site with the location headers a CDN sets. Each request takes the next place of
-- `places` (country:region:gpc,… ; an empty field sends no header), so every rule of the
-- site is matched in turn; country_header and region_header name the headers.
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "common.lua")

local path
local places = {}
local turn = 0

function init(args)
   common_init(args)
   path = "/v1/sites/" .. opts.site .. "/events"
   for place in string.gmatch(opts.places or "", "[^,]+") do
      local country, region, gpc = string.match(place, "^(%u*):(%w*):([01])$")
      if not country then error("ingest_rules.lua: bad place '" .. place .. "'") end
      local headers = { ["Content-Type"] = "application/json", ["Origin"] = opts.origin }
      if country ~= "" then headers[opts.country_header] = country end
      if region ~= "" then headers[opts.region_header] = region end
      if gpc == "1" then headers["Sec-GPC"] = "1" end
      table.insert(places, headers)
   end
   if #places == 0 then error("ingest_rules.lua: no places= argument") end
end

function request()
   turn = turn % #places + 1
   local body = string.format(
      '{"event_id":"%s","subject_id":"%s","policy_version":1,"action":"accept_all"}',
      event_id(), fresh_subject())
   return wrk.format("POST", path, places[turn], body)
end
