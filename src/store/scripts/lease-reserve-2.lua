-- Ask for a shard to be handed to a worker (move-shard, rebalance, drain). The current holder
-- learns it from its handoffs hash (the caller writes it next: another Cluster slot) at its next
-- lease round, finishes what it is doing and releases; meanwhile only the target may take the
-- free lease, until the reservation expires.
-- KEYS[1] lease hash
-- ARGV[1] target worker id
-- ARGV[2] reservation lifetime (ms)
-- Returns the current owner ('' if none; it may be dead: the handoff then waits for its expiry).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'target', ARGV[1], 'target_expires', now + tonumber(ARGV[2]))
return redis.call('HGET', KEYS[1], 'owner') or ''
