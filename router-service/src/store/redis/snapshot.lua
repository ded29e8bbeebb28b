-- ARGV: 3 session ('' for none), 4 customer ('' for none), 5 '1' to include the sessions,
-- 6 the last change this replica has seen ('' for none).
-- Returns {1, record} to replay; else {0, mode, last change, history, customer, sessions,
-- ...} where mode 'delta' is followed by the changes since ARGV[6] (as XRANGE gives them),
-- and mode 'full' by the app's active, last, statuses, roster, confirmed, desk,
-- unattributed, finished, misses, taken, weighted and waits hashes, when
-- the replica has seen nothing yet or the stream no longer reaches back to what it saw.
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
local newest = redis.call('XREVRANGE', KEYS[10], '+', '-', 'COUNT', 1)
local last = '0-0'
if #newest > 0 then last = newest[1][1] end
if ARGV[6] ~= '' then
  -- Incremental only while the stream still holds what came right after ARGV[6], and
  -- while what came is less than reading the app whole would be.
  if redis.call('XRANGE', KEYS[10], '-', ARGV[6], 'COUNT', 1)[1] then
    local limit = redis.call('HLEN', KEYS[3]) + redis.call('HLEN', KEYS[4])
      + redis.call('HLEN', KEYS[6]) + redis.call('HLEN', KEYS[7]) + 16
    local changes = redis.call('XRANGE', KEYS[10], '(' .. ARGV[6], '+', 'COUNT', limit)
    if #changes < limit then
      return {0, 'delta', last, history, customer, sessions, changes}
    end
  end
end
return {0, 'full', last, history, customer, sessions,
        redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]),
        redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7]),
        redis.call('HGETALL', KEYS[9]), redis.call('HGETALL', KEYS[13]),
        redis.call('HGETALL', KEYS[14]), redis.call('HGETALL', KEYS[15]),
        redis.call('HGETALL', KEYS[16]), redis.call('HGETALL', KEYS[17]),
        redis.call('HGETALL', KEYS[18]), redis.call('HGETALL', KEYS[19])}
