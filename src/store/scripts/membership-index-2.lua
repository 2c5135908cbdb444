-- Record a user's membership in a room in the user's joined-rooms index, if it is newer than what
-- the index holds (room stream positions only grow), so re-delivered or late entries change
-- nothing. A join, invite or knock also clears a previous "forget" of the room.
-- KEYS[1] the user's rooms hash (room id -> '<pos>:<membership>')
-- KEYS[2] the user's forgotten-rooms set
-- KEYS[3] the user's index write times (room id -> Redis TIME in microseconds when this entry was written):
--         /sync treats rooms written at or after its `since` cut as newly joined/invited/left, so
--         a room this index learns of late is still given in full by the next sync
-- ARGV[1] room id
-- ARGV[2] stream position of the membership event in the room
-- ARGV[3] membership
-- Position 0 is a membership in a room this server has no event of (an invite or knock over
-- federation, and the leave that ended it: src/sync/remote-invites.ts): such entries replace each
-- other (a knock becomes an invite, an invite a leave), and any event of the room replaces them.
-- Returns 1 when written, 0 when the index already had this or a newer membership.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local was = nil
if cur then
  local pos = tonumber(string.match(cur, '^(%d+):'))
  if pos and pos >= tonumber(ARGV[2]) and not (pos == 0 and tonumber(ARGV[2]) == 0) then
    return 0
  end
  was = string.match(cur, '^%d+:(.*)$')
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[3])
-- A join after a join (a display name or avatar change) is no new membership: the write time
-- stays, so /sync goes on following the room incrementally instead of giving it in full again.
if not (was == 'join' and ARGV[3] == 'join') then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[3], ARGV[1], string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2])))
end
local m = ARGV[3]
if m == 'join' or m == 'invite' or m == 'knock' then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
