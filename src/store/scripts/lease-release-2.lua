-- Give up a lease the caller holds with this token (clean shutdown, drain, handoff). The token
-- counter stays: the next holder's token is higher still.
-- KEYS[1] lease hash
-- ARGV[1] worker id
-- ARGV[2] fencing token
-- Returns 1 when released, 0 when the caller did not hold it.
local f = redis.call('HMGET', KEYS[1], 'owner', 'token')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'owner', '')
redis.call('HDEL', KEYS[1], 'epoch', 'expires')
return 1
