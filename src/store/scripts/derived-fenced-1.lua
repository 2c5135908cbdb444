-- A derived write (Decision.derivedWrites, a Cluster only: src/runtime/shard-runner.ts) whose
-- members change over time (`ordered`): applied member by member, only where no later holding of
-- the writing shard wrote the member already. On a Cluster the derived writes go out after the
-- commit, outside its slot, so a holder that stalled past its lease between its commit and these
-- writes could otherwise put an old value back over what the shard's next holder wrote since
-- (an HSET undoing a later HDEL). The fence: per member, the fencing token of the holding that
-- last wrote it (tokens of one shard only grow, lease-acquire-3.lua), in a hash in the key's slot.
-- A member is written by one actor only, so its tokens are all of one shard's.
-- KEYS[1] the derived key; KEYS[2] its fence hash (same slot: src/runtime/shard-runner.ts fenceKeyOf)
-- ARGV[1] the writer's fencing token; ARGV[2] the command (HSET, HDEL, SADD, SREM, ZADD, ZREM);
-- ARGV[3..] its arguments (HSET: field value pairs; ZADD: score member pairs; the others: members)
-- Returns the number of members left out (a later holding wrote them).
local key, fence = KEYS[1], KEYS[2]
local token = tonumber(ARGV[1])
local cmd = ARGV[2]
local pairs2 = {HSET = 1, ZADD = 2}
local single = {HDEL = true, SADD = true, SREM = true, ZREM = true}
if not pairs2[cmd] and not single[cmd] then return redis.error_reply('derived-fenced: command not supported: ' .. tostring(cmd)) end
local skipped = 0
local i = 3
while i <= #ARGV do
  local member, args
  if cmd == 'HSET' then
    member = ARGV[i]
    args = {ARGV[i], ARGV[i + 1]}
    i = i + 2
  elseif cmd == 'ZADD' then
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
    if token > seen then redis.call('HSET', fence, member, token) end
  else
    skipped = skipped + 1
  end
end
return skipped
