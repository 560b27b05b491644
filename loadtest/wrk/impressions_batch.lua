-- Impressions in batches of 10 fresh showings of 10 subjects (what a queue flushed after
-- a time offline sends): impressions.lua with SHOWINGS set.
SHOWINGS = 10
local dir = string.match(debug.getinfo(1, "S").source, "^@(.*/)") or "./"
dofile(dir .. "impressions.lua")
