-- ARGV: 3 agent, 4 the status record, 5 when it was set (ms), 6 the report's identity ('' when
-- it has none), 7/8 how long to remember identities (ms) and how many at most.
-- Returns 1 recorded, 2 duplicate, 3 superseded (a later status is known).
if seen(ARGV[6]) then return 2 end
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
remember_report(ARGV[6], ARGV[7], ARGV[8])
return outcome
