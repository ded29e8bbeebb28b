-- ARGV: 3 session, 4 customer, 5 the seat's deadline (ms), 6 how many agents the answer
-- lists, 7 when the user asked (ms), 8 the record to store when the session is new and the
-- first candidate takes it (built by the router with session::reserve, the usual case, so
-- that it costs no JSON here), 9/10 fair share's keep ('0': off) and the oldest time it
-- counts (ms), 11 the seats the session takes (its rule's weight), 12 '1' when the
-- decision must have been made over the state as it is now, 13 and 14 the customer's
-- history and profile records it read ('' for none), 15 the last change the replica has
-- seen ('' for none; '-' to be sent no changes), 16 the ranked candidates as one text:
-- `<agent> <seats>` pairs separated by spaces, the seats being those taken below which
-- the session still fits (one argument rather than two a candidate: Redis spends about as
-- much on each argument as on an HGET). The same rules as session::reserve.
--
-- The decision was made before this runs, over the replica's view: with ARGV[12], nothing
-- is reserved when the customer's records differ from what it read, or when anything
-- changed since ARGV[15] (this one included: what the sweep released). ARGV[15] '-' (the
-- replica's view is being read by another of its calls) checks the customer's records
-- only: such a decision takes the view as it is, one round trip behind at most, and each
-- candidate's load is still checked here.
--
-- Returns {tag, record, history, profile, mode, last, payload...}: tag 1 with the record
-- to replay, 3 when it reserved the first candidate with ARGV[8] as it is, 2 with the
-- record it reserved with another, 0 when every candidate is full (or there is none), 4
-- when the decision was not made over the state as it is (nothing reserved); then the
-- customer's history and profile as they are now, and what changed since ARGV[15] as
-- changes_since gives it (mode 'none' for '-').
-- The customer's records as current() read them, or as the reservation left them.
local history, profile = nil, nil

local function reply(tag, record)
  if ARGV[4] == '' then
    history, profile = '', ''
  else
    history = history or redis.call('HGET', KEYS[5], ARGV[4]) or ''
    profile = profile or redis.call('HGET', KEYS[8], ARGV[4]) or ''
  end
  local out = {tag, record or '', history, profile}
  if ARGV[15] == '-' then
    out[5] = 'none'
    out[6] = ''
    return out
  end
  local mode, last, payload = changes_since(ARGV[15])
  out[5] = mode
  out[6] = last
  for _, part in ipairs(payload) do out[#out + 1] = part end
  return out
end

-- Whether the decision was made over the state as it is (see above).
local function current()
  if ARGV[4] ~= '' then
    history = redis.call('HGET', KEYS[5], ARGV[4]) or ''
    profile = redis.call('HGET', KEYS[8], ARGV[4]) or ''
    if history ~= ARGV[13] or profile ~= ARGV[14] then return false end
  end
  if ARGV[15] == '-' then return true end
  if ARGV[15] == '' then return false end
  local newest = redis.call('XREVRANGE', KEYS[10], '+', '-', 'COUNT', 1)
  return #newest > 0 and newest[1][1] == ARGV[15]
end

local old = nil
local raw = redis.call('HGET', KEYS[1], ARGV[3])
if raw then
  old = cjson.decode(raw)
  if holds_seat(old) and val(old.answer) then return reply(1, raw) end
end
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[6])
local weight = tonumber(ARGV[11])
if ARGV[12] == '1' and not current() then return reply(4) end
local ranked = string.gmatch(ARGV[16], '(%S+) (%d+)')
local i = -1
for agent, below in ranked do
  i = i + 1
  local active = tonumber(redis.call('HGET', KEYS[3], agent) or '0')
  if active < tonumber(below) then
    local asked = tonumber(ARGV[7])
    local record = ARGV[8]
    local tag = 3
    if old or i > 0 then
      -- The answer as the router built it for the first candidate, from this one on.
      local answer = cjson.decode(ARGV[8]).answer
      local agents = {agent}
      while #agents < limit do
        local next_agent = ranked()
        if not next_agent then break end
        agents[#agents + 1] = next_agent
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
    history = remember(ARGV[4], agent, asked)
    redis.call('HSET', KEYS[1], ARGV[3], record)
    redis.call('ZADD', KEYS[2], ARGV[5], ARGV[3])
    if tag == 3 then return reply(3) end
    return reply(2, record)
  end
end
return reply(0)
