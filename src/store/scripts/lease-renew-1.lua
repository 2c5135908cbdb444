-- Extend a lease the caller holds with this exact fencing token.
-- KEYS[1] lease hash
-- ARGV[1] worker id
-- ARGV[2] fencing token
-- ARGV[3] ttl (ms)
-- Returns {1, target} when renewed (target: a worker the shard should be handed to, or ''),
-- {0, owner} when the lease is no longer the caller's.
local key = KEYS[1]
local f = redis.call('HMGET', key, 'owner', 'token', 'target', 'target_expires')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then
  return {0, f[1] or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', key, 'expires', now + tonumber(ARGV[3]))
local target = ''
if f[3] and f[3] ~= '' and tonumber(f[4] or '0') > now then
  target = f[3]
end
return {1, target}
