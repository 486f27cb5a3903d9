-- wrk script for bench/compare-alertmanager.sh: one event per request.
--
-- Environment:
--   BENCH_MODE     pagerduty     POST /v2/enqueue, a PagerDuty Events v2 trigger
--                                with a unique dedup_key per request
--                  alertmanager  POST /api/v2/alerts, one alert with a unique
--                                label per request
--                  storm         POST /v2/enqueue, the same trigger (one
--                                dedup_key) every time
--   BENCH_KEY      the routing key (pagerduty, storm)
--   BENCH_CAP      total events to send, split over the threads (0 = no cap;
--                  run for wrk's -d). With a cap, a thread that has sent its
--                  share idles until its last event is answered, then stops,
--                  so the server gets exactly BENCH_CAP events.
--   BENCH_DONE_DIR with a cap: each thread creates the file <dir>/<tid> when
--                  it stops. wrk's main thread still sleeps for -d, so the
--                  caller sends wrk SIGINT once every thread is done.
--   BENCH_THREADS  wrk's -t (needed to split the cap)
--   BENCH_PREFIX   prefix of the unique keys/labels (default "k")
-- At the end it prints one line: BENCH_RESULT {json}.

local mode = os.getenv("BENCH_MODE") or "pagerduty"
local key = os.getenv("BENCH_KEY") or ""
local cap = tonumber(os.getenv("BENCH_CAP") or "0")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local prefix = os.getenv("BENCH_PREFIX") or "k"

local next_tid = 0
function setup(thread)
   next_tid = next_tid + 1
   local quota = 0
   if cap > 0 then
      quota = math.floor(cap / nthreads)
      if next_tid <= cap % nthreads then quota = quota + 1 end
   end
   thread:set("tid", next_tid)
   thread:set("quota", quota)
end

local sent, answered, bad = 0, 0, 0
local first_call = true
local post_headers = { ["Content-Type"] = "application/json" }
local storm_body = nil

local function event_body(n)
   if mode == "alertmanager" then
      return '[{"labels":{"alertname":"BenchHighErrorRate","service":"api","severity":"critical",'
         .. '"instance":"' .. prefix .. "-" .. tid .. "-" .. n .. '"},'
         .. '"annotations":{"summary":"High error rate on api","rate":"12%","threshold":"5%"},'
         .. '"generatorURL":"http://127.0.0.1/graph"}]'
   end
   local dedup = prefix .. "-" .. tid .. "-" .. n
   if mode == "storm" then dedup = prefix end
   return '{"routing_key":"' .. key .. '","event_action":"trigger","dedup_key":"' .. dedup .. '",'
      .. '"payload":{"summary":"High error rate on api","source":"bench","severity":"critical",'
      .. '"custom_details":{"rate":"12%","threshold":"5%"}}}'
end

local path = (mode == "alertmanager") and "/api/v2/alerts" or "/v2/enqueue"

function request()
   -- wrk calls request() once on thread 1 before it starts, only to check
   -- the request; that call must not count.
   if first_call and tid == 1 then
      first_call = false
      return wrk.format("GET", "/healthz")
   end
   first_call = false
   if cap > 0 and sent >= quota then
      return wrk.format("GET", "/healthz")
   end
   sent = sent + 1
   if mode == "storm" then
      storm_body = storm_body or event_body(0)
      return wrk.format("POST", path, post_headers, storm_body)
   end
   return wrk.format("POST", path, post_headers, event_body(sent))
end

if cap > 0 then
   -- A connection that finds the share used up waits instead of sending
   -- filler requests; the thread stops before the wait is over.
   function delay()
      if sent >= quota then return 60000 end
      return 0
   end

   function response(status, headers, body)
      if status == 202 or (status == 200 and mode == "alertmanager") then
         answered = answered + 1
      elseif status ~= 200 then
         bad = bad + 1
      end
      if answered + bad >= quota and sent >= quota then
         local dir = os.getenv("BENCH_DONE_DIR")
         if dir then
            local f = io.open(dir .. "/" .. tid, "w")
            if f then f:close() end
         end
         wrk.thread:stop()
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,'
         .. '"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,"err_connect":%d,"err_read":%d,'
         .. '"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, latency.mean / 1000,
      e.connect, e.read, e.write, e.status, e.timeout))
end
