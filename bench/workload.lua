-- One benchmark cell for wrk: the request comes from the environment, every response is
-- checked, and done() prints one machine-readable line for run.py.
--
--   BENCH_METHOD, BENCH_PATH, BENCH_BODY  the request (BENCH_BODY may be empty)
--   BENCH_TOKEN                           sent as "Authorization: Bearer ..." when set
--   BENCH_UNIQUE                          replaces @NAME@ in the body with
--                                         "<BENCH_UNIQUE>-<thread>-<counter>" (W4)
--   BENCH_RATE, BENCH_CONNECTIONS         > 0: a think time per connection so that the
--                                         whole run offers about BENCH_RATE requests/s
--   BENCH_SERVICE_MS                      the server's time per request at its maximum
--                                         rate, subtracted from that think time

local method = os.getenv("BENCH_METHOD") or "POST"
local path = os.getenv("BENCH_PATH") or "/graphql"
local body = os.getenv("BENCH_BODY") or ""
local token = os.getenv("BENCH_TOKEN") or ""
local unique = os.getenv("BENCH_UNIQUE") or ""
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local connections = tonumber(os.getenv("BENCH_CONNECTIONS") or "1")
local service_ms = tonumber(os.getenv("BENCH_SERVICE_MS") or "0")

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("number", #threads)
end

function init(args)
   bad_status = 0
   graphql_errors = 0
   responses = 0
   counter = 0
   math.randomseed(os.time() + number)
   if body == "" then
      body = nil
   else
      wrk.headers["Content-Type"] = "application/json"
   end
   if token ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. token
   end
   if unique == "" then
      fixed = wrk.format(method, path, nil, body)
   end
end

function request()
   if fixed then
      return fixed
   end
   counter = counter + 1
   local name = string.format("%s-%d-%d", unique, number, counter)
   return wrk.format(method, path, nil, (body:gsub("@NAME@", name)))
end

function response(status, headers, response_body)
   responses = responses + 1
   if status ~= 200 then
      bad_status = bad_status + 1
   elseif response_body:find('"errors"', 1, true) then
      graphql_errors = graphql_errors + 1
   end
end

if rate > 0 then
   -- Closed loop with think time (wrk has no open-loop mode; wrk2 is not in Debian):
   -- each connection waits a random 0..2x its mean gap, so requests do not march in step.
   local gap_ms = math.max(0, 1000 * connections / rate - service_ms)
   function delay()
      return math.random() * 2 * gap_ms
   end
end

function done(summary, latency, requests)
   local bad, errors, answered = 0, 0, 0
   for _, thread in ipairs(threads) do
      bad = bad + thread:get("bad_status")
      errors = errors + thread:get("graphql_errors")
      answered = answered + thread:get("responses")
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "responses": %d, "bad_status": %d, '
         .. '"graphql_errors": %d, "non2xx": %d, "socket_errors": %d, "timeouts": %d, '
         .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, answered, bad, errors, e.status,
      e.connect + e.read + e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean
   ))
end
