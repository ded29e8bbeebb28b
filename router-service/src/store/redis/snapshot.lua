-- ARGV: now_ms, session ('' for none), customer ('' for none).
-- Returns {1, record} to replay, or {0, active, last, history, statuses, roster, customer}.
sweep(ARGV[1])
if ARGV[2] ~= '' then
  local replay = redis.call('HGET', KEYS[1], ARGV[2])
  if replay then return {1, replay} end
end
local history, customer = '', ''
if ARGV[3] ~= '' then
  history = redis.call('HGET', KEYS[5], ARGV[3]) or ''
  customer = redis.call('HGET', KEYS[8], ARGV[3]) or ''
end
return {0, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]), history,
        redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7]), customer}
