-- wrk script of `fedspace bench`: one request shape, given as arguments after "--":
--   METHOD DEPTH BODY_FILE ROTATE     ("-" for no Depth header / no body)
-- ROTATE > 0 appends "-<n>" (n cycling 0..ROTATE-1) to the path, so PUTs spread over files.
-- done() prints one line "WRK_JSON {...}" for the harness (latencies in microseconds).

local req, path = nil, nil
local rotate, counter = 0, 0

function init(args)
  wrk.method = args[1] or "GET"
  if args[2] and args[2] ~= "-" then
    wrk.headers["Depth"] = args[2]
  end
  if args[3] and args[3] ~= "-" then
    local f = assert(io.open(args[3], "rb"))
    wrk.body = f:read("*a")
    f:close()
    if wrk.method == "PROPFIND" then
      wrk.headers["Content-Type"] = "application/xml; charset=utf-8"
    end
  end
  rotate = tonumber(args[4] or "0") or 0
  path = wrk.path
  req = wrk.format()
end

function request()
  if rotate == 0 then
    return req
  end
  counter = (counter + 1) % rotate
  return wrk.format(nil, path .. "-" .. counter)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
