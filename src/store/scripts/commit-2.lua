-- Apply one inbox message's effects exactly once (DESIGN rule 3): the fencing check, the dedupe
-- check, the writes, the output entries, the done mark and the XACK happen in this one script,
-- so a crash leaves either all of them or none.
-- KEYS[1] lease hash
-- KEYS[2] done key of the message id (holds the reply; expires after the dedupe window)
-- KEYS[3] inbox stream
-- KEYS[4] outbox stream
-- KEYS[5] actor state key
-- KEYS[6] the asker's reply stream when ARGV[7] is 'r' (otherwise any key: unused)
-- KEYS[7..] keys named by the writes below
-- ARGV[1] worker id
-- ARGV[2] fencing token
-- ARGV[3] inbox consumer group
-- ARGV[4] inbox entry id (to XACK)
-- ARGV[5] reply blob (stored in the done key)
-- ARGV[6] dedupe window (seconds): longer than any entry stays pending after its commit
-- ARGV[7] '1' to XACK here (nobody waits for a reply); '0' when the caller acks after delivering
--         the reply, so that a crash between commit and reply leaves the entry pending and the
--         next holder re-sends the stored reply (its commit finds the done key) — on a Cluster,
--         where the reply stream lives in another slot; 'r' to deliver the reply to KEYS[6] here
--         (only while that stream exists, as reply-1.lua) and XACK: on one Redis, the commit, its
--         reply and its acknowledgement in one call, atomic together
-- ARGV[8] message id (the reply's field mid, mode 'r')
-- ARGV[9] approximate max length of the reply stream (mode 'r')
-- ARGV[10] state mode: 'k' keep, 's' set to ARGV[11], 'd' delete
-- ARGV[11] state blob
-- ARGV[12] number of output entries N, then N blobs (each XADDed to the outbox as field b,
--         with field a = ARGV[13+N] actor id and field k = ARGV[14+N] kind)
-- then: number of writes W, then per write: command, key index (into KEYS), argument count, arguments
-- Returns {'ok', id1, id2, ...} (output entry ids), {'dup', reply}, or {'stale', owner}.
local f = redis.call('HMGET', KEYS[1], 'owner', 'token')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then
  return {'stale', f[1] or ''}
end
local ack = ARGV[7] ~= '0'
local function reply(blob)
  if ARGV[7] == 'r' and redis.call('EXISTS', KEYS[6]) == 1 then
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[9], '*', 'mid', ARGV[8], 'b', blob)
  end
end
local done = redis.call('GET', KEYS[2])
if done then
  reply(done)
  if ack then redis.call('XACK', KEYS[3], ARGV[3], ARGV[4]) end
  return {'dup', done}
end
local mode = ARGV[10]
if mode == 's' then
  redis.call('SET', KEYS[5], ARGV[11])
elseif mode == 'd' then
  redis.call('DEL', KEYS[5])
end
local n = tonumber(ARGV[12])
local actor = ARGV[13 + n]
local kind = ARGV[14 + n]
local ids = {'ok'}
for i = 1, n do
  ids[#ids + 1] = redis.call('XADD', KEYS[4], '*', 'a', actor, 'k', kind, 'b', ARGV[12 + i])
end
local allowed = {SET=1, DEL=1, HSET=1, HDEL=1, HINCRBY=1, ZADD=1, ZREM=1, SADD=1, SREM=1, RPUSH=1, LTRIM=1, XADD=1, XTRIM=1, PEXPIRE=1, INCRBY=1}
-- Commands whose arguments are independent items (pairs for HSET and ZADD): applied in slices of
-- CHUNK arguments (even, so pairs stay whole) when there are more.
local chunked = {HSET=2, ZADD=2, SADD=1, SREM=1, HDEL=1, ZREM=1, DEL=1, RPUSH=1}
local CHUNK = 4000
local p = 15 + n
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
reply(ARGV[5])
if ack then redis.call('XACK', KEYS[3], ARGV[3], ARGV[4]) end
return ids
