-- ARGV: 3 session ('' for none), 4 customer ('' for none), 5 '1' to include the sessions.
-- Returns {1, record} to replay, or {0, active, last, history, statuses, roster, customer,
-- confirmed, sessions}.
if ARGV[3] ~= '' then
  local raw = redis.call('HGET', KEYS[1], ARGV[3])
  if raw then
    local rec = cjson.decode(raw)
    if holds_seat(rec) and val(rec.answer) then return {1, raw} end
  end
end
local history, customer = '', ''
if ARGV[4] ~= '' then
  history = redis.call('HGET', KEYS[5], ARGV[4]) or ''
  customer = redis.call('HGET', KEYS[8], ARGV[4]) or ''
end
local sessions = {}
if ARGV[5] == '1' then sessions = redis.call('HGETALL', KEYS[1]) end
return {0, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]), history,
        redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7]), customer,
        redis.call('HGETALL', KEYS[9]), sessions}
