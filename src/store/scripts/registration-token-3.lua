-- Registration tokens (src/api/client/registration-tokens.ts): the steps that must not interleave
-- with another front's. A token's definition (JSON: uses_allowed, expiry_time, n = creation order)
-- is a field of KEYS[1]; its completed registrations a counter in KEYS[2]; its pending ones a
-- sorted set KEYS[3] of UIA session id -> when that session expires (ms), so a session abandoned
-- half-way stops holding a use when it expires, without anyone cleaning up after it.
-- KEYS[1] definitions hash, KEYS[2] completed hash, KEYS[3] the token's pending set
-- ARGV[1] op, ARGV[2] token, then per op:
--   reserve <session> <ttl ms>: hold one use for the session if the token is valid now -> 1, else 0
--   complete <session>: the session's registration went through: pending -> completed -> 1
--   update <json of the attributes to change>: -> the new definition JSON, or false if no such token
--   delete: -> 1, or 0 if no such token
local op, token = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local raw = redis.call('HGET', KEYS[1], token)
if op == 'reserve' then
  if not raw then return 0 end
  local session = ARGV[3]
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZSCORE', KEYS[3], session) then return 1 end
  local def = cjson.decode(raw)
  if def.expiry_time ~= cjson.null and def.expiry_time < now then return 0 end
  if def.uses_allowed ~= cjson.null then
    local used = redis.call('ZCARD', KEYS[3]) + tonumber(redis.call('HGET', KEYS[2], token) or '0')
    if used >= def.uses_allowed then return 0 end
  end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), session)
  redis.call('PEXPIREAT', KEYS[3], now + tonumber(ARGV[4]))
  return 1
elseif op == 'complete' then
  local held = redis.call('ZREM', KEYS[3], ARGV[3])
  if raw then redis.call('HINCRBY', KEYS[2], token, 1) end
  return held
elseif op == 'update' then
  if not raw then return false end
  local def = cjson.decode(raw)
  local changes = cjson.decode(ARGV[3])
  for k, v in pairs(changes) do def[k] = v end
  local out = cjson.encode(def)
  redis.call('HSET', KEYS[1], token, out)
  return out
elseif op == 'delete' then
  if not raw then return 0 end
  redis.call('HDEL', KEYS[1], token)
  redis.call('HDEL', KEYS[2], token)
  redis.call('DEL', KEYS[3])
  return 1
end
return redis.error_reply('registration-token: unknown op ' .. tostring(op))
