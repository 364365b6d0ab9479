-- POST each line of $BODIES in turn to the URL's path; print a JSON summary at the end.
-- Used by bench/serving_load.py:  BODIES=req.jsonl wrk -s bench/wrk_post.lua URL
local bodies = {}
for line in io.lines(os.getenv("BODIES")) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
local i = 0
local headers = {["Content-Type"] = "application/json"}
-- DELAY_MS paces each connection: it waits that long before each request (bench_soak.py).
local pause = tonumber(os.getenv("DELAY_MS") or "")
if pause then
  delay = function() return pause end
end

request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[i])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\n',
    summary.requests, summary.duration / 1e6, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
