-- wrk script: POST a fixed body, print a machine-readable summary line at the end.
-- usage: WRK_BODY_FILE=body.json WRK_HEADERS='Name: value|Name: value' \
--        wrk -t1 -c32 -d10s --latency -s bench/wrk_post.lua URL
-- A Content-Type: application/json header is always sent.  Everything is set at load time
-- (not in init()) so wrk keeps its pre-formatted static request: no Lua call per request.

local f = assert(io.open(assert(os.getenv("WRK_BODY_FILE"), "WRK_BODY_FILE unset"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
for item in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^|]+") do
   local name, value = item:match("^%s*([^:]+):%s*(.-)%s*$")
   if name then wrk.headers[name] = value end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
      '"lat_mean_us":%.1f,"lat_stdev_us":%.1f,"lat_max_us":%.0f,' ..
      '"p50_us":%.0f,"p75_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"p999_us":%.0f}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
