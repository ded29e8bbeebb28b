-- ARGV: now_ms, session, customer, expires_ms, answer template, limit, then agent and
-- capacity for each ranked candidate. Returns {1, record} to replay, {2, record} when
-- reserved, {0} when every candidate is full.
sweep(ARGV[1])
local replay = redis.call('HGET', KEYS[1], ARGV[2])
if replay then return {1, replay} end
local limit = tonumber(ARGV[6])
local count = (#ARGV - 6) / 2
for i = 0, count - 1 do
  local agent = ARGV[7 + 2 * i]
  local active = tonumber(redis.call('HGET', KEYS[3], agent) or '0')
  if active < tonumber(ARGV[8 + 2 * i]) then
    local answer = cjson.decode(ARGV[5])
    local agents = {}
    for j = i, math.min(count - 1, i + limit - 1) do
      table.insert(agents, ARGV[7 + 2 * j])
    end
    answer.agents = agents
    answer.reserved = agent
    local record = cjson.encode({answer = answer, expires_at_ms = tonumber(ARGV[4])})
    redis.call('HINCRBY', KEYS[3], agent, 1)
    redis.call('HSET', KEYS[4], agent, ARGV[1])
    redis.call('HSET', KEYS[5], ARGV[3], cjson.encode({agent = agent, at_ms = tonumber(ARGV[1])}))
    redis.call('HSET', KEYS[1], ARGV[2], record)
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
    return {2, record}
  end
end
return {0}
