-- A worker's lease round: extend its epoch's expiry (every shard lease it holds in this epoch with
-- it: one write per worker and round, whatever its shard count) and read the handoffs asked of it.
-- An epoch a taker declared dead (lease-worker-live-1.lua, killed) is never extended: once a taker
-- has seen it dead, it stays dead (the taker's look at this record and its write to the shard's
-- lease are two calls, in different Cluster slots). An epoch that merely expired (a late round:
-- a stalled process or Redis) and that nobody declared dead is renewed: it is still the only
-- holder of its shards.
-- KEYS[1] worker lease hash: epoch, expires (ms), killed
-- KEYS[2] the worker's handoffs hash: shard name -> target worker
-- ARGV[1] the epoch the caller holds
-- ARGV[2] ttl (ms)
-- Returns {1, shard1, target1, ...} when renewed, {0} when the epoch is gone (declared dead or
-- replaced): any shard lease of that epoch may have been taken, the caller must start a new epoch.
local f = redis.call('HMGET', KEYS[1], 'epoch', 'killed')
if f[1] ~= ARGV[1] or f[2] == ARGV[1] then
  return {0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'expires', string.format('%d', now + tonumber(ARGV[2])))
local out = {1}
for _, v in ipairs(redis.call('HGETALL', KEYS[2])) do out[#out + 1] = v end
return out
