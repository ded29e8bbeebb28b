-- ARGV: 3 session, 4 customer, 5 the seat's deadline (ms), 6 how many agents the answer
-- lists, 7 when the user asked (ms), 8 the record to store when the session is new and the
-- first candidate takes it (built by the router with session::reserve, the usual case, so
-- that it costs no JSON here), 9/10 fair share's keep ('0': off) and the oldest time it
-- counts (ms), 11 the seats the session takes (its rule's weight), then agent and the
-- seats taken below which it still fits for each ranked candidate. Returns
-- {1, record} to replay, {3} when it reserved the first candidate with ARGV[8] as it is,
-- {2, record} when it reserved with another record, {0} when every candidate is full. The
-- same rules as session::reserve.
local old = nil
local raw = redis.call('HGET', KEYS[1], ARGV[3])
if raw then
  old = cjson.decode(raw)
  if holds_seat(old) and val(old.answer) then return {1, raw} end
end
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[6])
local weight = tonumber(ARGV[11])
local count = (#ARGV - 11) / 2
for i = 0, count - 1 do
  local agent = ARGV[12 + 2 * i]
  local active = tonumber(redis.call('HGET', KEYS[3], agent) or '0')
  if active < tonumber(ARGV[13 + 2 * i]) then
    local asked = tonumber(ARGV[7])
    local record = ARGV[8]
    local tag = 3
    if old or i > 0 then
      -- The answer as the router built it for the first candidate, from this one on.
      local answer = cjson.decode(ARGV[8]).answer
      local agents = {}
      for j = i, math.min(count - 1, i + limit - 1) do
        table.insert(agents, ARGV[12 + 2 * j])
      end
      answer.agents = agents
      answer.reserved = agent
      local fact = nil
      if old then
        local held, confirmed = seat_of(old)
        if held then
          release(held, confirmed, weight_of(old))
          if held ~= agent then announce(held) end
        end
        fact = val(old.fact)
        if fact and tonumber(fact.event_ms) > asked then asked = tonumber(fact.event_ms) end
      end
      local rec = {answer = answer, customer = ARGV[4], fact = fact, seat = agent,
                   reservation = {agent = agent, event_ms = asked, at_ms = now,
                                    until_ms = tonumber(ARGV[5])},
                   state = 'provisional', since_ms = now, expires_at_ms = tonumber(ARGV[5])}
      if weight > 1 then rec.weight = weight end
      record = cjson.encode(rec)
      tag = 2
    end
    local held_before = nil
    if old then held_before = seat_of(old) end
    take(agent, false, weight)
    touch(agent, now)
    if ARGV[9] ~= '0' and held_before ~= agent then
      took(agent, ARGV[3], now, tonumber(ARGV[10]), tonumber(ARGV[9]))
    end
    announce(agent)
    remember(ARGV[4], agent, asked)
    redis.call('HSET', KEYS[1], ARGV[3], record)
    redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
    if tag == 3 then return {3} end
    return {2, record}
  end
end
return {0}
