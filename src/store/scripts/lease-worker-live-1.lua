-- Is a worker's lease epoch live? Read only; run on the node of the worker's record, whose clock
-- the renewals use. A 0 is final for that epoch (lease-worker-renew-1.lua never extends an
-- expired epoch and lease-worker-start-1.lua never repeats one).
-- KEYS[1] worker lease hash: epoch, expires (ms)
-- ARGV[1] the epoch a shard lease names
-- Returns the ms left (> 0) while that epoch is live, 0 when it is dead.
local f = redis.call('HMGET', KEYS[1], 'epoch', 'expires')
if f[1] ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = tonumber(f[2] or '0') - now
if left <= 0 then return 0 end
return left
