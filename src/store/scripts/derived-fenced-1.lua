-- A derived write (Decision.derivedWrites, a Cluster only: src/runtime/shard-runner.ts) whose
-- members change over time (`ordered`): applied member by member, only where no later holding of
-- the writing shard wrote the member already. On a Cluster the derived writes go out after the
-- commit, outside its slot, so a holder that stalled past its lease between its commit and these
-- writes could otherwise put an old value back over what the shard's next holder wrote since
-- (an HSET undoing a later HDEL). The fence: per member, the fencing token of the holding that
-- last wrote it (tokens of one shard only grow: lease-acquire-3.lua), in a hash in the key's slot
-- (src/runtime/shard-runner.ts fenceKeyOf). A member is written by one actor only, so its tokens
-- are all of one shard's.
-- Once the key is gone (its last member removed), its fence is kept for a day — longer than any
-- holder stalls and still holds a connection — and then expires, so fences do not pile up for keys
-- that come and go (the delayed-state index has one per room, type and state key ever used); a
-- key written again keeps its fence for good.
-- KEYS[1] the derived key; KEYS[2] its fence hash (same slot)
-- ARGV[1] the writer's fencing token (decimal); ARGV[2] the command (HSET, HDEL, SADD, SREM, ZADD,
-- ZREM); ARGV[3..] its arguments: HSET field value pairs, ZADD score member pairs (no options),
-- the others members
-- Returns the number of members left out (a later holding wrote them).
local key, fence = KEYS[1], KEYS[2]
local token = tonumber(ARGV[1])
local cmd = ARGV[2]
local FENCE_TTL_MS = 86400000
if token == nil then return redis.error_reply('derived-fenced: the token is not a number: ' .. tostring(ARGV[1])) end
if cmd ~= 'HSET' and cmd ~= 'ZADD' and cmd ~= 'HDEL' and cmd ~= 'SADD' and cmd ~= 'SREM' and cmd ~= 'ZREM' then
  return redis.error_reply('derived-fenced: command not supported: ' .. tostring(cmd))
end
local skipped = 0
local i = 3
while i <= #ARGV do
  local member, args
  if cmd == 'HSET' then
    member = ARGV[i]
    args = {ARGV[i], ARGV[i + 1]}
    i = i + 2
  elseif cmd == 'ZADD' then
    if tonumber(ARGV[i]) == nil then return redis.error_reply('derived-fenced: ZADD takes score member pairs, no options') end
    member = ARGV[i + 1]
    args = {ARGV[i], ARGV[i + 1]}
    i = i + 2
  else
    member = ARGV[i]
    args = {ARGV[i]}
    i = i + 1
  end
  local seen = tonumber(redis.call('HGET', fence, member) or '0')
  if token >= seen then
    redis.call(cmd, key, unpack(args))
    if token > seen then redis.call('HSET', fence, member, ARGV[1]) end
  else
    skipped = skipped + 1
  end
end
if redis.call('EXISTS', key) == 0 then
  redis.call('PEXPIRE', fence, FENCE_TTL_MS)
else
  redis.call('PERSIST', fence)
end
return skipped
