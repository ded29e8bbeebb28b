-- ARGV: 3.. agent and Desk's count of the sessions it serves, for each member a status poll
-- read. Sets each member's unattributed load (KEYS[14]) to what the count exceeds the
-- sessions whose seats it holds now (KEYS[3] less the weighted seats beyond one, KEYS[18]),
-- members not listed to none, and announces the whole table (the same rule as the local
-- store's take_desk_load).
redis.call('DEL', KEYS[14])
local unattributed = {}
for i = 3, #ARGV - 1, 2 do
  local seats = tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0')
    - tonumber(redis.call('HGET', KEYS[18], ARGV[i]) or '0')
  local extra = tonumber(ARGV[i + 1]) - seats
  if extra > 0 then
    redis.call('HSET', KEYS[14], ARGV[i], extra)
    unattributed[ARGV[i]] = extra
  end
end
local encoded = '{}'
if next(unattributed) ~= nil then encoded = cjson.encode(unattributed) end
redis.call('XADD', KEYS[10], 'MAXLEN', '~', 20000, '*', 'unattributed', encoded)
return 1
