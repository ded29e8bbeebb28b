-- wrk script: signed ChatBot.OnAssignHuman callbacks, each a new session of a new customer.
-- The URL (with Sign and RequestTime) comes from bench/load.sh. At the end it prints one
-- line load.sh reads: requests/s, p50, p99 and p99.9 in milliseconds, and errors.
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function request()
  counter = counter + 1
  local session = string.format("load-%d-%d", id, counter)
  local body = string.format(
    '{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"%s","ClientUserId":"user-%s","EventTime":1670574414123}',
    session, session)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

function response(status, headers, body)
  if status ~= 200 or not body:find('"ActionStatus":"OK"', 1, true) then
    error("unexpected answer " .. status .. ": " .. body)
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.0f %.2f %.2f %.2f %d\n",
    summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, errors))
end
