-- Acquire (or keep) a shard lease, bumping the fencing token whenever ownership changes hands and
-- whenever a new runner takes it (the same worker and epoch again).
-- The holder's liveness is not in this hash but in its worker lease record (another Cluster slot):
-- the caller declares that dead first (lease-worker-live-1.lua) and passes the holding it found dead;
-- this takes the shard only if the hash still names exactly that holding. A dead epoch never comes
-- back, so the look and this write need not be atomic together. The fencing itself stays here,
-- in the shard's slot: the token changes with every new holding, and every commit script checks
-- owner and token in the same call as its writes.
-- KEYS[1] lease hash: owner, epoch, token, acquired (ms), target, target_expires
-- ARGV[1] worker id
-- ARGV[2] the caller's lease epoch (its worker lease record, live)
-- ARGV[3] a holder found dead ('' for none), ARGV[4] the epoch it was found dead in
-- Returns {token, owner}: token > 0 when the caller now holds the lease, 0 when it does not
-- (owner then names the holder, or "reserved:<worker>" during a handoff; a refusal because of a
-- holder adds its epoch: {0, owner, epoch}, and a 1 when the shard is reserved for the caller:
-- {0, owner, epoch, 1} — a move's target keeps the shard's name in its incoming set only while
-- that holds).
local key = KEYS[1]
local worker, epoch = ARGV[1], ARGV[2]
local f = redis.call('HMGET', key, 'owner', 'epoch', 'token', 'target', 'target_expires')
local owner, oepoch, token, target = f[1] or '', f[2] or '', tonumber(f[3] or '0'), f[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A token for a new holding (see below): at least the time in ms as well as one more than the last.
local function newToken()
  token = math.max(token + 1, now)
  redis.call('HSET', key, 'token', string.format('%d', token))
  return token
end
if owner == worker and oepoch == epoch then
  -- Already ours in this epoch (a runner lost in the process while the lease stayed). The new
  -- runner gets a new token all the same: whatever the lost one may still have in flight (an
  -- apply that outlived its removal) is fenced out, as a stale holder's would be.
  if target == worker then redis.call('HDEL', key, 'target', 'target_expires') end
  return {newToken(), worker}
end
-- Free: released, held in an earlier epoch of the caller's own (dead: its record moved on), or
-- held in the epoch the caller found dead.
local free = owner == '' or owner == worker or (owner == ARGV[3] and oepoch == ARGV[4])
if not free then
  if target == worker and tonumber(f[5] or '0') > now then return {0, owner, oepoch, 1} end
  return {0, owner, oepoch}
end
if target and target ~= '' and tonumber(f[5] or '0') > now and target ~= worker then
  return {0, 'reserved:' .. target}
end
-- A new holding: every write of the previous holder (or of an earlier holding of ours) is now stale.
-- The token is at least the time (ms) as well as one more than the last: a lease hash that lost its
-- last increments (a Cluster failover with asynchronous replication, an older AOF) still gives a
-- token above every one handed out before, which the fences of ordered derived writes kept
-- (derived-fenced-1.lua) rely on — a repeated token would let a stale holder's write through, a
-- lower one would refuse every write to what it stamped.
newToken()
redis.call('HSET', key, 'owner', worker, 'epoch', epoch, 'acquired', now)
if target == worker then
  redis.call('HDEL', key, 'target', 'target_expires')
end
return {token, worker}
