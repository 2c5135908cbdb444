-- Keep a room's record of a local user's joins and leaves (src/readers/push-evaluator.ts
-- `recordJoin`; src/store/keys.ts pushData.roomJoins): append '<list score>:<j|l>' when the user's
-- membership changes between joined and not, past the last change recorded (a redelivered entry
-- changes nothing). A user without a record counts as a member since before the room's list if
-- joined now: so while the room's notification list does not exist, a first change needs no record
-- (all its list will come after it) — most rooms' members never get one.
-- Nothing once the room is being purged (its members hash is gone: actors/room.ts decidePurgeBegin
-- deletes it as the purge begins). push-joins-1.lua took the list's absence as that guard, but the
-- purge's scan deletes the list in whichever batch meets it: an evaluator running behind the purge
-- could write the record after the scan had passed it and before the list went, leaving it behind.
-- KEYS[1] the room's joins record (hash)   KEYS[2] the room's notification list (zset)
-- KEYS[3] the room's members (hash), same shard
-- ARGV[1] user id   ARGV[2] the member event's list score   ARGV[3] '1' joined after it, '0' not
-- ARGV[4] '1' when, without a record, the user was joined before it (the evaluator's cached members)
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local score = tonumber(ARGV[2])
local joined = ARGV[3] == '1'
local was = ARGV[4] == '1'
if record then
  local last = string.match(record, '([^;]*)$')
  local s, m = string.match(last, '^([^:]+):(%a)$')
  if s and tonumber(s) >= score then return 0 end
  if m then was = m == 'j' end
end
if was == joined then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], (record and (record .. ';') or '') .. ARGV[2] .. ':' .. (joined and 'j' or 'l'))
return 1
