-- ARGV: 3 session. Returns its record as stored (after releasing what is due), or nil.
return redis.call('HGET', KEYS[1], ARGV[3])
