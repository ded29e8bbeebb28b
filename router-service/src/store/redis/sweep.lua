-- Shared by every script: helpers, then releasing what is due.
-- KEYS: 1 sessions, 2 deadlines, 3 active, 4 last, 5 history, 6 statuses, 7 roster,
-- 8 customers, 9 confirmed, 10 changes, 11 seen, 12 stray ends, 13 desk, 14 unattributed,
-- 15 finished, 16 misses, 17 taken, 18 weighted, 19 waits (see Keys in mod.rs).
-- ARGV: 1 now_ms, 2 max_session_ms, then the script's own.
--
-- Every change of an agent's load, idle clock or status is appended to the changes stream
-- (KEYS[10]), with the agent's new values, so that each router replica keeps its own view
-- of the app fresh by reading what came since it last looked.
local function val(x)
  if x == cjson.null then return nil end
  return x
end

-- The seat a session record holds: the agent and whether it is confirmed. A record without
-- a state was written before session events: a provisional reservation.
local function seat_of(rec)
  local state = val(rec.state)
  if state == nil then
    local answer = val(rec.answer)
    return answer and val(answer.reserved), false
  end
  if state == 'provisional' or state == 'confirmed' then
    return val(rec.seat), state == 'confirmed'
  end
  return nil, false
end

-- How many of its agent's seats a session takes: its rule's weight, absent when 1.
local function weight_of(rec)
  return tonumber(val(rec.weight) or 1) or 1
end

local function holds_seat(rec)
  local state = val(rec.state)
  return state == nil or state == 'provisional' or state == 'confirmed'
end

-- The load fields each agent's next announcement carries: those the helpers below changed,
-- with their new values.
local dirty = {}

local function mark(agent, field, value)
  local fields = dirty[agent]
  if not fields then
    fields = {}
    dirty[agent] = fields
  end
  fields[field] = value
end

-- The fields an announcement can carry, in order.
local LOAD_FIELDS = {'active', 'weighted', 'confirmed', 'last', 'finished', 'misses', 'taken'}

-- Appends to the changes stream the load fields of an agent's that changed, as they are
-- now (nothing when none did); each script calls it once per agent it changed, after
-- changing it. A field an entry leaves out is unchanged.
local function announce(agent)
  local fields = dirty[agent]
  if not fields then return end
  dirty[agent] = nil
  local args = {'XADD', KEYS[10], 'MAXLEN', '~', 20000, '*', 'agent', agent}
  for _, field in ipairs(LOAD_FIELDS) do
    local value = fields[field]
    if value ~= nil then
      args[#args + 1] = field
      args[#args + 1] = value
    end
  end
  redis.call(unpack(args))
end

-- Adds `by` to an agent's count in `key` (deleted at zero or below), marking the count's
-- field for the announcement.
local function count(key, agent, by, field)
  local now = redis.call('HINCRBY', key, agent, by)
  if now <= 0 then
    redis.call('HDEL', key, agent)
    now = 0
  end
  mark(agent, field, tostring(now))
end

-- A seat counting `seats` of the agent's (its session's weight) released or taken: the
-- active and confirmed counts are seats, the weighted one the seats beyond one per session.
local function release(agent, confirmed, seats)
  count(KEYS[3], agent, -seats, 'active')
  if confirmed then count(KEYS[9], agent, -seats, 'confirmed') end
  if seats > 1 then count(KEYS[18], agent, 1 - seats, 'weighted') end
end

local function take(agent, confirmed, seats)
  count(KEYS[3], agent, seats, 'active')
  if confirmed then count(KEYS[9], agent, seats, 'confirmed') end
  if seats > 1 then count(KEYS[18], agent, seats - 1, 'weighted') end
end

-- Moves the time an agent last finished serving a session (KEYS[15]) forward, never back.
local function finish(agent, at_ms)
  local last = tonumber(redis.call('HGET', KEYS[15], agent) or '0')
  if tonumber(at_ms) > last then
    mark(agent, 'finished', at_ms)
    redis.call('HSET', KEYS[15], agent, at_ms)
  end
end

-- An agent's missed offers (KEYS[16]) as engine::Misses' JSON: {"missed": {session: ms},
-- "accepted_ms": ms}, by its rules: misses offered at or before the last accepted offer are
-- dropped, only the newest `keep` kept (by time, then session), so any order and
-- repetition of events gives the same record.
local function read_misses(agent)
  local raw = redis.call('HGET', KEYS[16], agent)
  local ok, rec = false, nil
  if raw then ok, rec = pcall(cjson.decode, raw) end
  if not ok or type(rec) ~= 'table' then rec = {} end
  local missed = val(rec.missed)
  if type(missed) ~= 'table' then missed = {} end
  return tonumber(val(rec.accepted_ms) or 0) or 0, missed
end

local function write_misses(agent, accepted, missed)
  local list = {}
  for session, ms in pairs(missed) do
    list[#list + 1] = string.format('%s:%.0f', cjson.encode(session), ms)
  end
  -- Built by hand: cjson writes an empty table as an array, and Rust reads a map.
  local encoded = string.format('{"missed":{%s},"accepted_ms":%.0f}', table.concat(list, ','),
    accepted)
  mark(agent, 'misses', encoded)
  redis.call('HSET', KEYS[16], agent, encoded)
end

local function miss(agent, session, ms, keep)
  ms = tonumber(ms)
  local accepted, missed = read_misses(agent)
  if ms <= accepted or missed[session] then return end
  missed[session] = ms
  local list = {}
  for s, at in pairs(missed) do table.insert(list, {s, tonumber(at)}) end
  table.sort(list, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] > b[1]
  end)
  local kept = {}
  for i = 1, math.min(#list, keep) do kept[list[i][1]] = list[i][2] end
  write_misses(agent, accepted, kept)
end

local function accept(agent, ms)
  ms = tonumber(ms)
  local accepted, missed = read_misses(agent)
  if ms <= accepted then return end
  local kept = {}
  for session, at in pairs(missed) do
    if tonumber(at) > ms then kept[session] = at end
  end
  write_misses(agent, ms, kept)
end

-- Notes that agent took a seat for session at at_ms (KEYS[17]: a JSON object of session ->
-- ms per agent), keeping the newest `keep` no older than oldest_ms, newest by time then
-- session: the rules of engine::Taken.
local function took(agent, session, at_ms, oldest_ms, keep)
  local raw = redis.call('HGET', KEYS[17], agent)
  local taken = {}
  if raw then taken = cjson.decode(raw) end
  if taken[session] then return end
  taken[session] = at_ms
  local list = {}
  for s, ms in pairs(taken) do
    if tonumber(ms) >= oldest_ms then table.insert(list, {s, tonumber(ms)}) end
  end
  table.sort(list, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] > b[1]
  end)
  local kept = {}
  for i = 1, math.min(#list, keep) do kept[list[i][1]] = list[i][2] end
  local encoded = cjson.encode(kept)
  mark(agent, 'taken', encoded)
  redis.call('HSET', KEYS[17], agent, encoded)
end

-- Notes that `session`, asked at asked_ms, waited wait_ms in the group keyed `group`
-- (KEYS[19]: a JSON object of session -> [asked, wait] per group; of a session's waits the
-- shortest), keeping the newest 32 by when asked, then session: the rules of engine::Waits.
-- Announced for the replicas.
local function waited(group, session, asked_ms, wait_ms)
  local raw = redis.call('HGET', KEYS[19], group)
  local waits = {}
  if raw then waits = cjson.decode(raw) end
  local known = waits[session]
  if known and tonumber(known[2]) <= wait_ms then return end
  waits[session] = {asked_ms, wait_ms}
  local list = {}
  for s, w in pairs(waits) do table.insert(list, {s, tonumber(w[1]), tonumber(w[2])}) end
  table.sort(list, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] > b[1]
  end)
  local kept = {}
  for i = 1, math.min(#list, 32) do kept[list[i][1]] = {list[i][2], list[i][3]} end
  local encoded = cjson.encode(kept)
  redis.call('HSET', KEYS[19], group, encoded)
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', 20000, '*', 'waits', group, 'record', encoded)
end

-- Moves an agent's idle clock forward to at_ms, never back.
local function touch(agent, at_ms)
  local last = tonumber(redis.call('HGET', KEYS[4], agent) or '0')
  if tonumber(at_ms) > last then
    mark(agent, 'last', at_ms)
    redis.call('HSET', KEYS[4], agent, at_ms)
  end
end

-- Makes agent the customer's previous one, as it happened at event_ms (the reporter's
-- clock, which orders links) and recorded now (the router's, which sticky_ttl counts from),
-- unless a later link is known. Returns the customer's link as stored now (nil for none).
local function remember(customer, agent, event_ms)
  if customer == nil or customer == '' then return nil end
  local raw = redis.call('HGET', KEYS[5], customer)
  if raw then
    local known = cjson.decode(raw)
    local known_ms = val(known.event_ms) or known.at_ms
    if tonumber(known_ms) > tonumber(event_ms) then return raw end
  end
  -- Built by hand (the fields of record::HistoryRecord): cheaper than cjson.encode.
  local link = string.format('{"agent":%s,"at_ms":%.0f,"event_ms":%.0f}', cjson.encode(agent),
    tonumber(ARGV[1]), tonumber(event_ms))
  redis.call('HSET', KEYS[5], customer, link)
  return link
end

-- Report identities are KEYS[11], a sorted set of identity -> until when it is remembered
-- (ms): whether a report with this identity ('' for none) was recorded within the window.
local function seen(id)
  if id == '' then return false end
  local until_ms = redis.call('ZSCORE', KEYS[11], id)
  return until_ms ~= false and tonumber(until_ms) > tonumber(ARGV[1])
end

-- Remembers a report's identity for window_ms, forgetting the expired and, past cap, the
-- oldest first: the set is bounded in count as well as in time.
local function remember_report(id, window_ms, cap)
  if id == '' then return end
  local now = tonumber(ARGV[1])
  redis.call('ZADD', KEYS[11], now + tonumber(window_ms), id)
  redis.call('ZREMRANGEBYSCORE', KEYS[11], '-inf', now)
  local over = redis.call('ZCARD', KEYS[11]) - tonumber(cap)
  if over > 0 then redis.call('ZPOPMIN', KEYS[11], over) end
end

-- What changed in the app since the change `since` (the last one a replica saw, '' for
-- none), as three values: 'delta', the newest change ('0-0' when none) and {changes after
-- `since`, as XRANGE gives them}, while the stream still reaches back to `since` and what
-- came is less than reading the app whole would be; else 'full', the newest change and the
-- app's active, last, statuses, roster, confirmed, desk, unattributed, finished, misses,
-- taken, weighted and waits hashes.
local function changes_since(since)
  local newest = redis.call('XREVRANGE', KEYS[10], '+', '-', 'COUNT', 1)
  local last = '0-0'
  if #newest > 0 then last = newest[1][1] end
  if since ~= '' then
    -- Nothing came since: the stream still holds `since` itself.
    if since == last then return 'delta', last, {{}} end
    if redis.call('XRANGE', KEYS[10], '-', since, 'COUNT', 1)[1] then
      local limit = redis.call('HLEN', KEYS[3]) + redis.call('HLEN', KEYS[4])
        + redis.call('HLEN', KEYS[6]) + redis.call('HLEN', KEYS[7]) + 16
      local changes = redis.call('XRANGE', KEYS[10], '(' .. since, '+', 'COUNT', limit)
      if #changes < limit then return 'delta', last, {changes} end
    end
  end
  return 'full', last, {
    redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4]),
    redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7]),
    redis.call('HGETALL', KEYS[9]), redis.call('HGETALL', KEYS[13]),
    redis.call('HGETALL', KEYS[14]), redis.call('HGETALL', KEYS[15]),
    redis.call('HGETALL', KEYS[16]), redis.call('HGETALL', KEYS[17]),
    redis.call('HGETALL', KEYS[18]), redis.call('HGETALL', KEYS[19])}
end

-- Releases the seat of every session whose deadline has passed (the record stays, expired,
-- for max_session from its deadline), and forgets ended and expired sessions remembered long
-- enough. The same rules as session::expire.
local function sweep(now, keep)
  now = tonumber(now)
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, session in ipairs(due) do
    local raw = redis.call('HGET', KEYS[1], session)
    if not raw then
      redis.call('ZREM', KEYS[2], session)
    else
      local rec = cjson.decode(raw)
      if holds_seat(rec) then
        local agent, confirmed = seat_of(rec)
        if agent then
          release(agent, confirmed, weight_of(rec))
          announce(agent)
        end
        local deadline = tonumber(rec.expires_at_ms) or now
        -- A record without a state is a reservation written before session events; a
        -- session the router did not reserve is forgotten with its seat.
        if val(rec.reservation) == nil and val(rec.state) ~= nil then
          redis.call('HDEL', KEYS[1], session)
          redis.call('ZREM', KEYS[2], session)
        else
          rec.state = 'expired'
          rec.seat = nil
          rec.since_ms = deadline
          rec.expires_at_ms = deadline + tonumber(keep)
          redis.call('HSET', KEYS[1], session, cjson.encode(rec))
          redis.call('ZADD', KEYS[2], rec.expires_at_ms, session)
        end
      else
        redis.call('HDEL', KEYS[1], session)
        redis.call('ZREM', KEYS[2], session)
      end
    end
  end
end

sweep(ARGV[1], ARGV[2])
