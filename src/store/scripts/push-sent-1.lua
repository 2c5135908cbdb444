-- How far a local user has read a room by sending (src/readers/push-evaluator.ts `noteSent`;
-- src/store/keys.ts pushData.sentUpTo): their member's score moves up to the event's timeline
-- position, never back (a redelivered older entry changes nothing: ZADD GT). Nothing once the room
-- is purged (its members hash is gone: the evaluator may run behind the purge and must not leave a
-- key of the room behind).
--
-- KEYS[1] the room's members (hash)   KEYS[2] the room's sentUpTo (sorted set), same shard
-- ARGV[1] the member (sentMember: the user id, or '<thread root>\0<user id>')   ARGV[2] the position
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
