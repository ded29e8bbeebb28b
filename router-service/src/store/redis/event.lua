-- Records a session's new state, computed by session::report from the record it read, if
-- that record is still what is stored (else returns 0: read again and recompute).
-- ARGV: 3 session, 4 the record read ('' for none), 5 the new record ('' when the event
-- changes nothing), 6 its deadline, 7 how long to remember the report's identity ('' when
-- it has none; KEYS[11] is then absent), 8/9 the seat released (agent or '', '1' when
-- confirmed), 10/11 the seat taken, 12/13 an idle clock to move (agent or '', ms),
-- 14/15/16 a previous-agent link (customer or '', agent, ms).
-- Returns 1 recorded, 2 duplicate, 3 superseded (nothing to change).
if ARGV[7] ~= '' and redis.call('EXISTS', KEYS[11]) == 1 then return 2 end
local current = redis.call('HGET', KEYS[1], ARGV[3]) or ''
if current ~= ARGV[4] then return 0 end
local outcome = 3
if ARGV[5] ~= '' then
  if ARGV[8] .. ':' .. ARGV[9] ~= ARGV[10] .. ':' .. ARGV[11] then
    if ARGV[8] ~= '' then release(ARGV[8], ARGV[9] == '1') end
    if ARGV[10] ~= '' then take(ARGV[10], ARGV[11] == '1') end
  end
  if ARGV[12] ~= '' then touch(ARGV[12], ARGV[13]) end
  if ARGV[14] ~= '' then remember(ARGV[14], ARGV[15], ARGV[16]) end
  local told = {}
  for _, agent in ipairs({ARGV[8], ARGV[10], ARGV[12]}) do
    if agent ~= '' and not told[agent] then
      announce(agent)
      told[agent] = true
    end
  end
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[3])
  outcome = 1
end
if ARGV[7] ~= '' then redis.call('SET', KEYS[11], '1', 'PX', ARGV[7]) end
return outcome
