-- Record that an event notifies a user (src/readers/push-evaluator.ts), and trim what the user
-- has read since. Idempotent: the same event again changes nothing (a redelivered outbox entry).
-- KEYS[1] the user's unread main-timeline notifications in the room (zset: event id by timeline position)
-- KEYS[2] the highlighting subset of KEYS[1]
-- KEYS[3] the user's unread thread notifications in the room (zset: '<n|h>\0<thread root>\0<event id>' by position)
-- KEYS[4] the user's notification list (zset: '<room id>\0<event id>' by arrival)
-- KEYS[5] the highlighting subset of KEYS[4]
-- KEYS[6] notification details (hash: KEYS[4] member -> JSON)
-- KEYS[7] the user's joined-rooms index (hash: room id -> '<pos>:<membership>'): counts start
--         after the user's latest membership event, as Synapse's do (an invite, then the join,
--         are not unread)
-- ARGV[1] the event's timeline position
-- ARGV[2] event id
-- ARGV[3] thread root id, '' for the main timeline
-- ARGV[4] '1' when the notification highlights
-- ARGV[5] the notification list member ('<room id>\0<event id>')
-- ARGV[6] its score (when the event reached the room's outbox: ms * 1000 + sequence)
-- ARGV[7] its details (JSON)
-- ARGV[8] the user's read position for the main timeline (latest unthreaded or 'main' receipt; 0: none)
-- ARGV[9] the user's unthreaded read position (covers every thread; 0: none)
-- ARGV[10] the user's read position in this thread (unthreaded or this thread's receipt; 0: none)
-- ARGV[11] how many notifications the list keeps
-- ARGV[12] room id
-- Returns 1 when the event was new to the list, 0 otherwise.
local pos = tonumber(ARGV[1])
local highlight = ARGV[4] == '1'
local thread = ARGV[3]
local membership = redis.call('HGET', KEYS[7], ARGV[12])
local joined = membership and tonumber(string.match(membership, '^(%d+):')) or 0
if thread == '' then
  local mainRead = math.max(tonumber(ARGV[8]), joined)
  if pos > mainRead then
    redis.call('ZADD', KEYS[1], pos, ARGV[2])
    if highlight then
      redis.call('ZADD', KEYS[2], pos, ARGV[2])
    end
  end
  if mainRead > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', mainRead)
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', mainRead)
  end
else
  local threadRead = math.max(tonumber(ARGV[10]), joined)
  local tail = '\0' .. thread .. '\0' .. ARGV[2]
  if pos > threadRead and not redis.call('ZSCORE', KEYS[3], 'n' .. tail) and not redis.call('ZSCORE', KEYS[3], 'h' .. tail) then
    redis.call('ZADD', KEYS[3], pos, (highlight and 'h' or 'n') .. tail)
  end
  local unthreadedRead = math.max(tonumber(ARGV[9]), joined)
  if unthreadedRead > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', unthreadedRead)
  end
  if threadRead > unthreadedRead then
    -- This thread's entries the thread's own receipt covers.
    local prefix = '\0' .. thread .. '\0'
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', threadRead)) do
      if string.sub(m, 2, 1 + #prefix) == prefix then
        redis.call('ZREM', KEYS[3], m)
      end
    end
  end
end
if redis.call('HSETNX', KEYS[6], ARGV[5], ARGV[7]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[5])
if highlight then
  redis.call('ZADD', KEYS[5], ARGV[6], ARGV[5])
end
local keep = tonumber(ARGV[11])
local n = redis.call('ZCARD', KEYS[4])
if n > keep then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[4], 0, n - keep - 1)) do
    redis.call('ZREM', KEYS[4], m)
    redis.call('ZREM', KEYS[5], m)
    redis.call('HDEL', KEYS[6], m)
  end
end
return 1
