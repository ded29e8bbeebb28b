-- ARGV: 3 session ('' for none), 4 customer ('' for none), 5 '1' to include the sessions,
-- 6 the last change this replica has seen ('' for none).
-- Returns {1, record} to replay; else {0, mode, last change, history, customer, sessions,
-- payload...}, the payload as changes_since gives it.
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
local mode, last, payload = changes_since(ARGV[6])
local reply = {0, mode, last, history, customer, sessions}
for _, part in ipairs(payload) do reply[#reply + 1] = part end
return reply
