-- Move due actor timers into the shard's inbox (src/runtime/timers.ts), fenced by the lease.
-- Each due timer becomes one inbox entry and leaves the timer set in the same script, so a
-- timer fires once even if the worker dies right after; its message id is derived from the
-- timer and its due time, so the runtime's dedupe also absorbs any repeat.
-- KEYS[1] lease hash
-- KEYS[2] timers sorted set (member `kind\0actor\0key`, score = due ms)
-- KEYS[3] timer bodies hash (member → msgpack body)
-- KEYS[4] inbox stream
-- ARGV[1] worker id
-- ARGV[2] fencing token
-- ARGV[3] now (ms)
-- ARGV[4] at most this many timers
-- Returns {'ok', fired, next due ms or ''} or {'stale'}.
local f = redis.call('HMGET', KEYS[1], 'owner', 'token')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then
  return {'stale'}
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local fired = 0
for i = 1, #due, 2 do
  local member = due[i]
  local at = due[i + 1]
  local body = redis.call('HGET', KEYS[3], member)
  local k1 = string.find(member, '\0', 1, true)
  local k2 = k1 and string.find(member, '\0', k1 + 1, true)
  if body and k1 and k2 then
    local kind = string.sub(member, 1, k1 - 1)
    local actor = string.sub(member, k1 + 1, k2 - 1)
    redis.call('XADD', KEYS[4], '*', 'mid', 'timer:' .. member .. ':' .. at, 'a', actor, 'k', kind, 'b', body, 't', ARGV[3])
    fired = fired + 1
  end
  redis.call('ZREM', KEYS[2], member)
  redis.call('HDEL', KEYS[3], member)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {'ok', fired, nxt[2] or ''}
