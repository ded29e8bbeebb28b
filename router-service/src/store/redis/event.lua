-- Records a session's new state, computed by session::weigh from the record it read, if
-- that record is still what is stored (else returns 0: read again and recompute).
-- ARGV: 3 session, 4 the record read ('' for none), 5 the new record ('' when the event
-- changes nothing), 6 its deadline, 7 the report's identity ('' when it has none), 8/9 the
-- seat released (agent or '', '1' when confirmed), 10/11 the seat taken, 12/13 an idle
-- clock to move (agent or '', ms), 14/15/16 a previous-agent link (customer or '', agent,
-- ms), 17/18 how long to remember identities (ms) and how many at most, 19/20 for a seat
-- the router did not reserve, its agent ('' for none) and the most sessions they may hold,
-- 21/22 whether the new record is the end of a session the router did not reserve ('1')
-- and how many of those the app keeps (KEYS[12] orders them, oldest forgotten first),
-- 23/24 an agent who finished serving the session (agent or '', ms: what wrap-up counts from),
-- 25/26 a reserved agent who missed the offer (agent or '', ms), 27/28 one who accepted it,
-- 29 how many misses an agent's record keeps, 30/31 an agent who took a seat anew (agent or
-- '', ms), 32/33 fair share's keep ('0': off) and the oldest time it counts (ms), 34/35
-- how many seats the released and the taken seat count, 36/37/38 a wait to note (the
-- group's key or '', when the user asked and how long until an agent took it, ms).
-- Returns 1 recorded, 2 duplicate, 3 superseded (nothing to change), 4 over capacity
-- (nothing stored).
if seen(ARGV[7]) then return 2 end
local current = redis.call('HGET', KEYS[1], ARGV[3]) or ''
if current ~= ARGV[4] then return 0 end
if ARGV[19] ~= '' and tonumber(redis.call('HGET', KEYS[3], ARGV[19]) or '0') >= tonumber(ARGV[20]) then
  return 4
end
local outcome = 3
if ARGV[5] ~= '' then
  if ARGV[8] .. ':' .. ARGV[9] .. ':' .. ARGV[34] ~= ARGV[10] .. ':' .. ARGV[11] .. ':' .. ARGV[35] then
    if ARGV[8] ~= '' then release(ARGV[8], ARGV[9] == '1', tonumber(ARGV[34])) end
    if ARGV[10] ~= '' then take(ARGV[10], ARGV[11] == '1', tonumber(ARGV[35])) end
  end
  if ARGV[12] ~= '' then touch(ARGV[12], ARGV[13]) end
  if ARGV[14] ~= '' then remember(ARGV[14], ARGV[15], ARGV[16]) end
  if ARGV[23] ~= '' then finish(ARGV[23], ARGV[24]) end
  if ARGV[25] ~= '' then miss(ARGV[25], ARGV[3], ARGV[26], tonumber(ARGV[29])) end
  if ARGV[27] ~= '' then accept(ARGV[27], ARGV[28]) end
  if ARGV[30] ~= '' and ARGV[32] ~= '0' then
    took(ARGV[30], ARGV[3], tonumber(ARGV[31]), tonumber(ARGV[33]), tonumber(ARGV[32]))
  end
  if ARGV[36] ~= '' then waited(ARGV[36], ARGV[3], tonumber(ARGV[37]), tonumber(ARGV[38])) end
  local told = {}
  for _, agent in ipairs({ARGV[8], ARGV[10], ARGV[12], ARGV[23], ARGV[25], ARGV[27]}) do
    if agent ~= '' and not told[agent] then
      announce(agent)
      told[agent] = true
    end
  end
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[3])
  if ARGV[21] == '1' then
    redis.call('ZADD', KEYS[12], ARGV[1], ARGV[3])
    local over = redis.call('ZCARD', KEYS[12]) - tonumber(ARGV[22])
    if over > 0 then
      local oldest = redis.call('ZPOPMIN', KEYS[12], over)
      for i = 1, #oldest, 2 do
        local raw = redis.call('HGET', KEYS[1], oldest[i])
        if raw then
          local rec = cjson.decode(raw)
          if val(rec.reservation) == nil and val(rec.state) == 'ended' then
            redis.call('HDEL', KEYS[1], oldest[i])
            redis.call('ZREM', KEYS[2], oldest[i])
          end
        end
      end
    end
  end
  outcome = 1
end
remember_report(ARGV[7], ARGV[17], ARGV[18])
return outcome
