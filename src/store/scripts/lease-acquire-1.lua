-- Acquire (or keep) a shard lease, bumping the fencing token whenever ownership changes hands.
-- KEYS[1] lease hash: owner, token, expires (ms), acquired (ms), target, target_expires
-- ARGV[1] worker id
-- ARGV[2] ttl (ms)
-- Returns {token, owner}: token > 0 when the caller now holds the lease, 0 when it does not
-- (owner then names the holder, or "reserved:<worker>" during a handoff).
local key = KEYS[1]
local worker = ARGV[1]
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local f = redis.call('HMGET', key, 'owner', 'expires', 'token', 'target', 'target_expires')
local owner, expires, token, target, target_expires = f[1], tonumber(f[2] or '0'), tonumber(f[3] or '0'), f[4], tonumber(f[5] or '0')
local live = owner and owner ~= '' and expires > now
if live and owner ~= worker then
  return {0, owner}
end
if (not live) and target and target ~= '' and target_expires > now and target ~= worker then
  return {0, 'reserved:' .. target}
end
if not (live and owner == worker) then
  -- A new holding: every write of the previous holder (or of an earlier holding of ours) is now stale.
  token = redis.call('HINCRBY', key, 'token', 1)
  redis.call('HSET', key, 'acquired', now)
end
redis.call('HSET', key, 'owner', worker, 'expires', now + ttl)
if target == worker then
  redis.call('HDEL', key, 'target', 'target_expires')
end
return {token, worker}
