-- Expires due assignments; prepended to both scripts.
-- KEYS: 1 sessions, 2 expiry, 3 active (see Keys in mod.rs for all eight).
local function sweep(now)
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, session in ipairs(due) do
    local raw = redis.call('HGET', KEYS[1], session)
    if raw then
      local agent = cjson.decode(raw).answer.reserved
      if type(agent) == 'string' then
        if redis.call('HINCRBY', KEYS[3], agent, -1) <= 0 then
          redis.call('HDEL', KEYS[3], agent)
        end
      end
      redis.call('HDEL', KEYS[1], session)
    end
  end
  if #due > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  end
end
