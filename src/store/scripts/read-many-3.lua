-- Many reads of one shard's keys (one hash slot) in one call: the per-room reads of a sync batched
-- across the rooms of a shard instead of one command per room and key.
-- KEYS   the keys, all of one hash slot
-- ARGV[i] what to read at KEYS[i]:
--        'hgetall'    HGETALL
--        'ztop'       the member with the highest score, and its score (ZREVRANGE 0 0 WITHSCORES)
--        'sha1'       the SHA-1 (hex) of the string value, '' when there is none: a version of a
--                     record that changes whenever it does, without sending the record (a room
--                     actor's state blob changes with every event, redaction, backfill and
--                     re-snapshotting of the room: src/sync/initial-slices.ts)
-- Returns one reply per key, in order.
local out = {}
for i, key in ipairs(KEYS) do
  local op = ARGV[i]
  if op == 'hgetall' then
    out[i] = redis.call('HGETALL', key)
  elseif op == 'ztop' then
    out[i] = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  elseif op == 'sha1' then
    local v = redis.call('GET', key)
    out[i] = v and redis.sha1hex(v) or ''
  else
    return redis.error_reply('read-many: unknown read ' .. tostring(op))
  end
end
return out
