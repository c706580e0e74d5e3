-- wrk script for benchmarks/load_predict.py: POST one image to /api/predict, as the PNG itself
-- (the way the drawing page sends a drawing), as a multipart upload of it, or as JSON pixels; print
-- wrk's summary as one JSON line at the end.
local path = os.getenv("DIGITS_LOAD_BODY")
local file = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
local payload = file:read("*a")
file:close()

wrk.method = "POST"
local kind = os.getenv("DIGITS_LOAD_KIND")
if kind == "pixels" then
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = payload
elseif kind == "drawing" then
  wrk.headers["Content-Type"] = "image/png"
  wrk.body = payload
else
  local boundary = "digits-load-boundary"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="drawing.png"\r\n'
    .. "Content-Type: image/png\r\n\r\n"
    .. payload .. "\r\n--" .. boundary .. "--\r\n"
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, '
      .. '"errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d, '
      .. '"latency_p50_us": %d, "latency_p90_us": %d, "latency_p99_us": %d, '
      .. '"latency_max_us": %d, "latency_mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read,
    errors.write, errors.status, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
