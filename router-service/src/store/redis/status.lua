-- ARGV: 3 agent, 4 the status record, 5 when it was set (ms), 6 how long to remember the
-- report's identity ('' when it has none; KEYS[11] is then absent).
-- Returns 1 recorded, 2 duplicate, 3 superseded (a later status is known).
if ARGV[6] ~= '' and redis.call('EXISTS', KEYS[11]) == 1 then return 2 end
local outcome = 1
local raw = redis.call('HGET', KEYS[6], ARGV[3])
if raw then
  local ok, known = pcall(cjson.decode, raw)
  if ok and type(known) == 'table' and tonumber(known.at_ms) > tonumber(ARGV[5]) then
    outcome = 3
  end
end
if outcome == 1 then
  redis.call('HSET', KEYS[6], ARGV[3], ARGV[4])
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', 20000, '*', 'agent', ARGV[3], 'status', ARGV[4])
end
if ARGV[6] ~= '' then redis.call('SET', KEYS[11], '1', 'PX', ARGV[6]) end
return outcome
