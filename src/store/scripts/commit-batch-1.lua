-- Apply several inbox messages of ONE actor exactly once, in one script (src/runtime/shard-runner.ts,
-- kinds with `batch`): the caller decided them one after the other in memory; this writes their
-- combined effects — the final state, every output and write in order, a done mark per message and
-- the XACKs — so a crash leaves all of them or none, as commit-2.lua does for one message.
-- If any of the messages is already done (a previous holder committed it after the caller looked),
-- nothing is written and the caller applies them one by one instead (commit-2.lua's dedupe).
-- KEYS[1] lease hash
-- KEYS[2] inbox stream
-- KEYS[3] outbox stream
-- KEYS[4] actor state key
-- KEYS[5 .. 4+M] done keys of the M message ids
-- KEYS[5+M ..] keys named by the writes below
-- ARGV[1] worker id
-- ARGV[2] fencing token
-- ARGV[3] inbox consumer group
-- ARGV[4] dedupe window (seconds)
-- ARGV[5] M, then per message: inbox entry id, reply blob, '1' to XACK here or '0' (the caller
--         acks after delivering the reply)
-- then: state mode ('k' keep, 's' set), state blob, number of outputs N, N blobs, actor id, kind,
-- number of writes W, then per write: command, key index (into KEYS), argument count, arguments
-- Returns {'ok', id1, id2, ...} (output entry ids), {'dup'} or {'stale', owner}.
local f = redis.call('HMGET', KEYS[1], 'owner', 'token')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then
  return {'stale', f[1] or ''}
end
local m = tonumber(ARGV[5])
for i = 1, m do
  if redis.call('EXISTS', KEYS[4 + i]) == 1 then return {'dup'} end
end
local p = 6 + 3 * m
local mode = ARGV[p]
if mode == 's' then redis.call('SET', KEYS[4], ARGV[p + 1]) end
p = p + 2
local n = tonumber(ARGV[p])
local actor = ARGV[p + n + 1]
local kind = ARGV[p + n + 2]
local ids = {'ok'}
for i = 1, n do
  ids[#ids + 1] = redis.call('XADD', KEYS[3], '*', 'a', actor, 'k', kind, 'b', ARGV[p + i])
end
p = p + n + 3
local allowed = {SET=1, DEL=1, HSET=1, HDEL=1, HINCRBY=1, ZADD=1, ZREM=1, SADD=1, SREM=1, RPUSH=1, LTRIM=1, XADD=1, XTRIM=1, PEXPIRE=1, INCRBY=1}
local chunked = {HSET=2, ZADD=2, SADD=1, SREM=1, HDEL=1, ZREM=1, DEL=1, RPUSH=1}
local CHUNK = 4000
local w = tonumber(ARGV[p])
p = p + 1
for _ = 1, w do
  local cmd = ARGV[p]
  local key = KEYS[tonumber(ARGV[p + 1])]
  local argc = tonumber(ARGV[p + 2])
  if not allowed[cmd] then
    return redis.error_reply('commit-batch: command not allowed: ' .. cmd)
  end
  local step = chunked[cmd]
  if step and argc > CHUNK then
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
local ttl = tonumber(ARGV[4])
for i = 1, m do
  local q = 6 + 3 * (i - 1)
  redis.call('SET', KEYS[4 + i], ARGV[q + 1], 'EX', ttl)
  if ARGV[q + 2] == '1' then redis.call('XACK', KEYS[2], ARGV[3], ARGV[q]) end
end
return ids
