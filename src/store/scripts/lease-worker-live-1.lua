-- Is a worker's lease epoch live? Run on the node of the worker's record, whose clock the
-- renewals use.
-- KEYS[1] worker lease hash: epoch, expires (ms), killed (an epoch declared dead)
-- ARGV[1] the epoch a shard lease names
-- ARGV[2] '1' for a taker about to take that epoch's shards: an expired epoch is then declared
--         dead (killed = epoch), for good — its renewal is refused from now on, so the takeover
--         that follows in another call (lease-acquire-3.lua) cannot race a late renewal. '0' only
--         looks (an expired epoch nobody declared dead may still be renewed by its late worker).
-- Returns the ms left (> 0) while that epoch is live, 0 when it is expired or dead.
local f = redis.call('HMGET', KEYS[1], 'epoch', 'expires', 'killed')
if f[1] ~= ARGV[1] or f[3] == ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = tonumber(f[2] or '0') - now
if left > 0 then return left end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'killed', ARGV[1]) end
return 0
