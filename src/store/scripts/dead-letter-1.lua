-- Move a message that keeps failing to the shard's dead-letter stream, mark it done with an error
-- reply (so a re-sent copy is answered, not retried) and acknowledge it, all fenced.
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
-- ARGV[7..] field/value pairs for the dead-letter entry
-- Returns {'ok', dead entry id} or {'stale', owner}.
local f = redis.call('HMGET', KEYS[1], 'owner', 'token')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then
  return {'stale', f[1] or ''}
end
local id = redis.call('XADD', KEYS[4], '*', unpack(ARGV, 7, #ARGV))
if not redis.call('GET', KEYS[2]) then
  redis.call('SET', KEYS[2], ARGV[5], 'EX', tonumber(ARGV[6]))
end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
return {'ok', id}
