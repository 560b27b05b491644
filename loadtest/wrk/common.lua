-- Shared by the scenario scripts (loaded with dofile): arguments, random ids, a hard
-- deadline, exact per-thread status counts and one JSON line from done().
--
-- Arguments after `--` are key=value: duration (s, when sending stops), nonce (makes
-- event ids unique per run), subjects (size of the pre-filled s-<n> range), site, key
-- (read key for the state scenarios), origin.
--
-- Exact counting: wrk kills its connections at -d, so a request still in flight then
-- may be stored by the server and never counted here. delay() therefore stops sending
-- at `duration` and the harness runs wrk for a grace second longer: every request sent
-- is answered, and `sent == received` proves it.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } loadtest_timespec;
int clock_gettime(int clk_id, loadtest_timespec *tp);
]]
local ts = ffi.new("loadtest_timespec")
local CLOCK_MONOTONIC = 1

function now_s()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
   return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- main state: hand every thread a number, keep the threads for done()
local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("thread_id", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

-- thread state ---------------------------------------------------------------------
opts = {}
counts = {}       -- status code -> responses (global: read by done() via thread:get)
sent = 0
received = 0
in_window = 0     -- responses that arrived before the deadline (for req/s)
deadline = 0
started = 0
local counter = 0
local nonce = 0

function parse_args(args)
   for _, a in ipairs(args) do
      local k, v = string.match(a, "^([%w_]+)=(.*)$")
      if k then opts[k] = v end
   end
end

function common_init(args)
   parse_args(args)
   nonce = (tonumber(opts.nonce) or 0) % 4294967296
   math.randomseed(nonce + (thread_id or 0) * 7919)
   started = now_s()
   deadline = started + (tonumber(opts.duration) or 5)
end

-- A UUIDv4-shaped id, unique per (run nonce, thread, counter) and random elsewhere.
function event_id()
   counter = counter + 1
   return string.format("%08x-%04x-4%03x-%04x-%04x%08x",
      nonce, thread_id or 0, math.random(0, 4095), 32768 + math.random(0, 16383),
      math.random(0, 65535), counter)
end

-- A fresh subject for ingest (never one of the pre-filled s-<n>).
function fresh_subject()
   return string.format("w-%x-%d-%d", nonce, thread_id or 0, counter)
end

-- One of the pre-filled subjects s-0 .. s-(subjects-1).
function known_subject()
   return "s-" .. math.random(0, (tonumber(opts.subjects) or 1) - 1)
end

function delay()
   if now_s() < deadline then
      sent = sent + 1
      return 0
   end
   return 3600000   -- past the deadline: this connection sends nothing more
end

function response(status, headers, body)
   received = received + 1
   counts[status] = (counts[status] or 0) + 1
   if now_s() <= deadline then in_window = in_window + 1 end
end

-- main state: summary as one JSON line -----------------------------------------------
local function json_counts(t)
   local parts = {}
   for k, v in pairs(t) do table.insert(parts, string.format('"%s":%d', tostring(k), v)) end
   return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
   local total = { sent = 0, received = 0, in_window = 0 }
   local statuses = {}
   local window = 0
   for _, t in ipairs(threads) do
      total.sent = total.sent + t:get("sent")
      total.received = total.received + t:get("received")
      total.in_window = total.in_window + t:get("in_window")
      local o = t:get("opts")
      window = tonumber(o.duration) or window
      for k, v in pairs(t:get("counts")) do statuses[k] = (statuses[k] or 0) + v end
   end
   local e = summary.errors
   local pct = {}
   for _, p in ipairs({ 50, 90, 99, 99.9 }) do
      table.insert(pct, string.format('"%s":%d', tostring(p), latency:percentile(p)))
   end
   io.write(string.format(
      'LOADTEST_JSON {"sent":%d,"received":%d,"in_window":%d,"window_s":%s,' ..
      '"wrk_requests":%d,"duration_us":%d,"statuses":%s,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"mean":%d,"max":%d,"percentiles":{%s}}}\n',
      total.sent, total.received, total.in_window, tostring(window),
      summary.requests, summary.duration, json_counts(statuses),
      e.connect, e.read, e.write, e.status, e.timeout,
      math.floor(latency.mean), latency.max, table.concat(pct, ",")))
end
