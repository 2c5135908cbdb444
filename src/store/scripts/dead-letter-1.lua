-- Move a message that keeps failing to the shard's dead-letter stream and mark it done with an
-- error reply (so a re-sent copy is answered, not retried), all fenced. Acknowledged here unless
-- the caller acks after delivering the reply (as for commits).
-- KEYS[1] lease hash
-- KEYS[2] done key of the message id
-- KEYS[3] inbox stream
-- KEYS[4] dead-letter stream
-- ARGV[1] worker id
-- ARGV[2] fencing token
-- ARGV[3] inbox consumer group
-- ARGV[4] inbox entry id
-- ARGV[5] error reply blob (stored in the done key)
-- ARGV[6] dedupe window (seconds)
-- ARGV[7] '1' to XACK here, '0' to leave it to the caller
-- ARGV[8..] field/value pairs for the dead-letter entry
-- Returns {'ok', dead entry id}, {'dup', stored reply} (already finished), or {'stale', owner}.
local f = redis.call('HMGET', KEYS[1], 'owner', 'token')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then
  return {'stale', f[1] or ''}
end
local ack = ARGV[7] == '1'
local done = redis.call('GET', KEYS[2])
if done then
  if ack then redis.call('XACK', KEYS[3], ARGV[3], ARGV[4]) end
  return {'dup', done}
end
local id = redis.call('XADD', KEYS[4], '*', unpack(ARGV, 8, #ARGV))
redis.call('SET', KEYS[2], ARGV[5], 'EX', tonumber(ARGV[6]))
if ack then redis.call('XACK', KEYS[3], ARGV[3], ARGV[4]) end
return {'ok', id}
