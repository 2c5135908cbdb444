-- The start of a /sync computation on a single Redis (src/sync/engine.ts, takeSnapshot): the cut
-- (TIME) and the user's membership index, read atomically in one call — what a MULTI of four
-- commands (six with MULTI and EXEC) read before, for every computation of every sync. A script
-- runs alone, as a MULTI does, so the index is exactly the one at the cut. (On a Cluster the cut
-- is the earliest of the masters' clocks and the index is read apart: not this script.)
-- KEYS[1] the user's joined-rooms index (`membershipIndexData.rooms`, hash)
-- KEYS[2] when each of its entries was written (`membershipIndexData.writtenAt`, hash)
-- KEYS[3] the user's forgotten rooms (`membershipIndexData.forgotten`, set)
-- Returns {TIME, HGETALL KEYS[1], HGETALL KEYS[2], SMEMBERS KEYS[3]}.
return { redis.call('TIME'), redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('SMEMBERS', KEYS[3]) }
