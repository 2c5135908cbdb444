-- Apply one inbox message's effects exactly once (DESIGN rule 3): the fencing check, the dedupe
-- check, the writes, the output entries, the done mark and the XACK happen in this one script,
-- so a crash leaves either all of them or none.
-- KEYS[1] lease hash
-- KEYS[2] done key of the message id (holds the reply; expires after the dedupe window)
-- KEYS[3] inbox stream
-- KEYS[4] outbox stream
-- KEYS[5] actor state key
-- KEYS[6..] keys named by the writes below
-- ARGV[1] worker id
-- ARGV[2] fencing token
-- ARGV[3] inbox consumer group
-- ARGV[4] inbox entry id (to XACK)
-- ARGV[5] reply blob (stored in the done key)
-- ARGV[6] dedupe window (seconds): longer than any entry stays pending after its commit
-- ARGV[7] '1' to XACK here; '0' when the caller acks after delivering the reply, so that a crash
--         between commit and reply leaves the entry pending and the next holder re-sends the
--         stored reply (its commit finds the done key)
-- ARGV[8] state mode: 'k' keep, 's' set to ARGV[9], 'd' delete
-- ARGV[9] state blob
-- ARGV[10] number of output entries N, then N blobs (each XADDed to the outbox as field b,
--         with field a = ARGV[11+N] actor id and field k = ARGV[12+N] kind)
-- then: number of writes W, then per write: command, key index (into KEYS), argument count, arguments
-- Returns {'ok', id1, id2, ...} (output entry ids), {'dup', reply}, or {'stale', owner}.
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
local mode = ARGV[8]
if mode == 's' then
  redis.call('SET', KEYS[5], ARGV[9])
elseif mode == 'd' then
  redis.call('DEL', KEYS[5])
end
local n = tonumber(ARGV[10])
local actor = ARGV[11 + n]
local kind = ARGV[12 + n]
local ids = {'ok'}
for i = 1, n do
  ids[#ids + 1] = redis.call('XADD', KEYS[4], '*', 'a', actor, 'k', kind, 'b', ARGV[10 + i])
end
local allowed = {SET=1, DEL=1, HSET=1, HDEL=1, HINCRBY=1, ZADD=1, ZREM=1, SADD=1, SREM=1, RPUSH=1, LTRIM=1, XADD=1, XTRIM=1, PEXPIRE=1, INCRBY=1}
-- Commands whose arguments are independent items (pairs for HSET and ZADD): applied in slices of
-- CHUNK arguments (even, so pairs stay whole) when there are more.
local chunked = {HSET=2, ZADD=2, SADD=1, SREM=1, HDEL=1, ZREM=1, DEL=1, RPUSH=1}
local CHUNK = 4000
local p = 13 + n
local w = tonumber(ARGV[p])
p = p + 1
for _ = 1, w do
  local cmd = ARGV[p]
  local key = KEYS[tonumber(ARGV[p + 1])]
  local argc = tonumber(ARGV[p + 2])
  if not allowed[cmd] then
    return redis.error_reply('commit: command not allowed: ' .. cmd)
  end
  local step = chunked[cmd]
  if step and argc > CHUNK then
    -- Lua's unpack takes at most ~8,000 values: a big write (a 10,000-member room's state joined
    -- over federation) goes in slices, which for these commands is the same write.
    local first = p + 3
    local last = p + 2 + argc
    while first <= last do
      local upto = math.min(first + CHUNK - 1, last)
      redis.call(cmd, key, unpack(ARGV, first, upto))
      first = upto + 1
    end
  else
    redis.call(cmd, key, unpack(ARGV, p + 3, p + 2 + argc))
  end
  p = p + 3 + argc
end
redis.call('SET', KEYS[2], ARGV[5], 'EX', tonumber(ARGV[6]))
if ack then redis.call('XACK', KEYS[3], ARGV[3], ARGV[4]) end
return ids
