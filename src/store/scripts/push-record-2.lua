-- Record that an event notifies some users (src/readers/push-evaluator.ts), and trim what each
-- has read since: one call per event for all the notified users whose keys live together (every
-- user on a single Redis; the users of one user shard, hence one hash slot, on a Cluster).
-- Idempotent: the same event again changes nothing (a redelivered outbox entry).
--
-- Per user i (0-based), KEYS[7i+1 .. 7i+7]:
--   +1 the user's unread main-timeline notifications in the room (zset: event id by timeline position)
--   +2 the highlighting subset of +1
--   +3 the user's unread thread notifications in the room (zset: '<n|h>\0<thread root>\0<event id>' by position)
--   +4 the user's notification list (zset: '<room id>\0<event id>' by arrival)
--   +5 the highlighting subset of +4
--   +6 notification details (hash: +4 member -> JSON)
--   +7 the user's joined-rooms index (hash: room id -> '<pos>:<membership>'): counts start after
--      the user's latest membership event, as Synapse's do (an invite, then the join, are not unread)
-- The event's, the same for every user:
--   ARGV[1] the event's timeline position
--   ARGV[2] event id
--   ARGV[3] thread root id, '' for the main timeline
--   ARGV[4] the notification list member ('<room id>\0<event id>')
--   ARGV[5] its score (when the event reached the room's outbox: ms * 1000 + sequence)
--   ARGV[6] how many notifications a user's list keeps
--   ARGV[7] room id
--   ARGV[8] D, how many distinct notification details follow
--   ARGV[9 .. 8+D] the details (JSON; users with the same actions share one)
-- Then per user i, ARGV[8+D+5i+1 .. 8+D+5i+5]:
--   +1 '1' when the notification highlights
--   +2 which of the details is theirs (1..D)
--   +3 the user's read position for the main timeline (latest unthreaded or 'main' receipt; 0: none)
--   +4 the user's unthreaded read position (covers every thread; 0: none)
--   +5 the user's read position in this thread (unthreaded or this thread's receipt; 0: none)
-- Returns how many users the event was new to (their list did not have it yet).
local pos = tonumber(ARGV[1])
local eventId = ARGV[2]
local thread = ARGV[3]
local member = ARGV[4]
local score = ARGV[5]
local keep = tonumber(ARGV[6])
local roomId = ARGV[7]
local distinct = tonumber(ARGV[8])
local users = #KEYS / 7
local added = 0

for i = 0, users - 1 do
  local k = 7 * i
  local a = 8 + distinct + 5 * i
  local highlight = ARGV[a + 1] == '1'
  local details = ARGV[8 + tonumber(ARGV[a + 2])]
  local membership = redis.call('HGET', KEYS[k + 7], roomId)
  local joined = membership and tonumber(string.match(membership, '^(%d+):')) or 0
  if thread == '' then
    local mainRead = math.max(tonumber(ARGV[a + 3]), joined)
    if pos > mainRead then
      redis.call('ZADD', KEYS[k + 1], pos, eventId)
      if highlight then
        redis.call('ZADD', KEYS[k + 2], pos, eventId)
      end
    end
    if mainRead > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', mainRead)
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 2], '-inf', mainRead)
    end
  else
    local threadRead = math.max(tonumber(ARGV[a + 5]), joined)
    local tail = '\0' .. thread .. '\0' .. eventId
    if pos > threadRead and not redis.call('ZSCORE', KEYS[k + 3], 'n' .. tail) and not redis.call('ZSCORE', KEYS[k + 3], 'h' .. tail) then
      redis.call('ZADD', KEYS[k + 3], pos, (highlight and 'h' or 'n') .. tail)
    end
    local unthreadedRead = math.max(tonumber(ARGV[a + 4]), joined)
    if unthreadedRead > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', unthreadedRead)
    end
    if threadRead > unthreadedRead then
      -- This thread's entries the thread's own receipt covers.
      local prefix = '\0' .. thread .. '\0'
      for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[k + 3], '-inf', threadRead)) do
        if string.sub(m, 2, 1 + #prefix) == prefix then
          redis.call('ZREM', KEYS[k + 3], m)
        end
      end
    end
  end
  if redis.call('HSETNX', KEYS[k + 6], member, details) == 1 then
    added = added + 1
    redis.call('ZADD', KEYS[k + 4], score, member)
    if highlight then
      redis.call('ZADD', KEYS[k + 5], score, member)
    end
    local n = redis.call('ZCARD', KEYS[k + 4])
    if n > keep then
      for _, m in ipairs(redis.call('ZRANGE', KEYS[k + 4], 0, n - keep - 1)) do
        redis.call('ZREM', KEYS[k + 4], m)
        redis.call('ZREM', KEYS[k + 5], m)
        redis.call('HDEL', KEYS[k + 6], m)
      end
    end
  end
end
return added
