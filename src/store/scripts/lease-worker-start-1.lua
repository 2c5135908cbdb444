-- Begin a new lease epoch for a worker (at start, or after its previous epoch was declared dead).
-- Every shard lease taken in an earlier epoch is dead from now on, whatever its expiry said: an
-- epoch never comes back (see lease-worker-renew-1.lua), which is what lets other workers take a
-- dead worker's shards with a separate look at this record (lease-worker-live-1.lua, then
-- lease-acquire-3.lua).
-- KEYS[1] worker lease hash: epoch, expires (ms)
-- KEYS[2] the worker's handoffs hash (emptied: its old holdings are gone)
-- ARGV[1] ttl (ms)
-- Returns the new epoch (a string: larger than any earlier one, and than the time in ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local old = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') or 0
-- Never smaller than the clock: an epoch record lost with a failed-over Redis node cannot make a
-- new epoch repeat an old one.
local epoch = math.max(old + 1, now)
redis.call('HSET', KEYS[1], 'epoch', string.format('%d', epoch), 'expires', string.format('%d', now + tonumber(ARGV[1])))
redis.call('DEL', KEYS[2])
return string.format('%d', epoch)
