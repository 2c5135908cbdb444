-- Ask for a shard to be handed to a worker (move-shard, rebalance, drain). The current holder
-- sees the target when it renews, finishes what it is doing and releases; meanwhile only the
-- target may take the free lease, until the reservation expires.
-- KEYS[1] lease hash
-- ARGV[1] target worker id
-- ARGV[2] reservation lifetime (ms)
-- Returns the current owner ('' if none).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'target', ARGV[1], 'target_expires', now + tonumber(ARGV[2]))
local f = redis.call('HMGET', KEYS[1], 'owner', 'expires')
if f[1] and f[1] ~= '' and tonumber(f[2] or '0') > now then
  return f[1]
end
return ''
