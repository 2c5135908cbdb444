-- Raise a room's bump stamp in the recency index of some users (src/readers/recency-index.ts),
-- never lower it (ZADD GT), so a redelivered batch or entries applied out of order change nothing.
-- One call for all the users whose indexes live together (every user on a single Redis; the users
-- of one user shard, hence one hash slot, on a Cluster), instead of one call per member.
-- KEYS[i] user i's recency index (`recencyIndexData.rooms`, user shard)
-- ARGV[1] the bump stamp (ms), ARGV[2] the room id
-- Returns, per user, 1 when the room's place among their rooms may have moved (it is new there, or
-- was not first before), 0 when nothing changed or it stayed first: the reader wakes the user's
-- sliding syncs only for 1 (a room already on top that gets a new message changes no list order).
local moved = {}
for i = 1, #KEYS do
  local before = redis.call('ZREVRANK', KEYS[i], ARGV[2])
  local changed = redis.call('ZADD', KEYS[i], 'GT', 'CH', ARGV[1], ARGV[2])
  if changed == 0 or before == 0 then
    moved[i] = 0
  else
    moved[i] = 1
  end
end
return moved
