-- Move the push evaluator's progress on a room shard forward (src/readers/push-evaluator.ts), never
-- back: a batch redelivered after a handoff may finish after a later one did.
-- KEYS[1] the room shard's `pushData.evaluatedUpTo` (string: an outbox entry id '<ms>-<seq>')
-- ARGV[1] the id of the last entry of a batch whose writes are all done
-- Returns the id stored now: ARGV[1] when it moved forward (or was already there), else the later one.
-- Ids are compared as decimal integers of any length (ms, then seq), as Redis orders stream ids.
local function parts(id)
  return string.match(id, '^(%d+)-(%d+)$')
end
-- Decimal strings without leading zeros (as Redis writes ids): the longer is larger, else by bytes.
local function below(x, y)
  if #x ~= #y then
    return #x < #y
  end
  return x < y
end
local nextMs, nextSeq = parts(ARGV[1])
if not nextMs then
  return redis.error_reply('push-progress: not a stream id: ' .. ARGV[1])
end
local current = redis.call('GET', KEYS[1])
if current then
  local ms, seq = parts(current)
  if ms and (below(nextMs, ms) or (nextMs == ms and below(nextSeq, seq))) then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
