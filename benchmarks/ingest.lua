-- wrk script: POST /v1/events with `batch` events per request, each with a unique id.
-- Arguments (after `--`): API key, events per request, a tag that makes ids unique per run.
-- Ids are "<tag>-<thread>-<counter>", so no event is ever a duplicate.

local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

local key, batch, tag
local counter = 0

function init(args)
  key = args[1]
  batch = tonumber(args[2]) or 1
  tag = args[3] or "run"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

local template = '{"id":"%s","type":"order.placed","subject":"cust_%d",'
  .. '"actor":{"id":"user_%d","type":"user"},'
  .. '"data":{"order_id":"ord_%s","amount":129.9,"currency":"BRL",'
  .. '"items":[{"sku":"SKU-1","qty":2,"price":39.95},{"sku":"SKU-2","qty":1,"price":50.0}],'
  .. '"customer":{"email":"ana.souza@example.com","name":"Ana Souza"},"channel":"web"},'
  .. '"context":{"ip":"127.0.0.1","user_agent":"wrk","locale":"pt-BR"}}'

local function event()
  counter = counter + 1
  local id = tag .. "-" .. tid .. "-" .. counter
  return string.format(template, id, counter % 5000, counter % 50, id)
end

function request()
  local body
  if batch == 1 then
    body = event()
  else
    local parts = {}
    for i = 1, batch do
      parts[i] = event()
    end
    body = "[" .. table.concat(parts, ",") .. "]"
  end
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,'
      .. '"write":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
