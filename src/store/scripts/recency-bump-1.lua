-- Raise a room's bump stamp in a user's recency index (src/readers/recency-index.ts), never lower
-- it (ZADD GT), so a redelivered batch or entries applied out of order change nothing.
-- KEYS[1] the user's recency index (`recencyIndexData.rooms`, user shard)
-- ARGV[1] the bump stamp (ms), ARGV[2] the room id
-- Returns 1 when the room's place among the user's rooms may have moved (it is new there, or was
-- not first before), 0 when nothing changed or it stayed first: the reader wakes the user's
-- sliding syncs only for 1 (a room already on top that gets a new message changes no list order).
local before = redis.call('ZREVRANK', KEYS[1], ARGV[2])
local changed = redis.call('ZADD', KEYS[1], 'GT', 'CH', ARGV[1], ARGV[2])
if changed == 0 or before == 0 then
  return 0
end
return 1
