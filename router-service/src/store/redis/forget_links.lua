-- Forgets customers' previous agents linked before ARGV[3] (Unix ms, the router's clock),
-- looking at about ARGV[5] links of the history hash from HSCAN cursor ARGV[4].
-- Returns {next cursor ('0' once the whole hash was seen), how many were forgotten}.
local scan = redis.call('HSCAN', KEYS[5], ARGV[4], 'COUNT', ARGV[5])
local forgotten = 0
local links = scan[2]
for i = 1, #links, 2 do
  local ok, link = pcall(cjson.decode, links[i + 1])
  if ok and tonumber(link.at_ms) and tonumber(link.at_ms) < tonumber(ARGV[3]) then
    redis.call('HDEL', KEYS[5], links[i])
    forgotten = forgotten + 1
  end
end
return {scan[1], forgotten}
