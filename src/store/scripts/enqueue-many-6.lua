-- Append several actor messages to their shards' inboxes and hand them to the shards' holders, in
-- one call (src/runtime/actor-client.ts on a single Redis): the asks one process makes in the same
-- turn of its event loop, instead of an XADD per message, a PUBLISH per shard, and then a read by
-- the holder. Each entry is exactly the stream entry one XADD would append.
-- Push delivery (issue 23): once every entry is in, the woken shards whose lease names a holder
-- have their undelivered inbox entries read into that holder's pending list here (XREADGROUP for
-- the holder's consumer, as the holder's own read would), and they are published to it with them:
-- the holder applies them without a read of its own (one round trip and one fsync fewer a wave).
-- The shards of one holder are read with ONE XREADGROUP over their inboxes and published as ONE
-- message on the holder's push channel (enqueue-many-4.lua read and published per shard: with a
-- wave's messages spread over a hundred shards, a hundred reads, packs and pub/sub messages, each
-- paid in Redis and again in the worker). What the holder may miss (a message lost with its
-- subscriber connection, a shard it does not run, a full buffer) is pending for it above the last
-- entry its runner was given, and its next read gives that first (inbox-read-2.lua), so the order
-- holds; the worker decides when a push can be taken as it comes (ShardRunner.pushed). A shard
-- without a holder, whose read fails here (no group yet), or with entries pending for a consumer
-- other than its holder (a stale holder read on: its read claims them first), gets the plain
-- wake-up '1' on its own channel. A holder's message bigger than the byte cap, or one for a holder
-- that does not listen on its push channel (PUBSUB NUMSUB: a holder of an earlier version, which
-- listens on the shards' channels only, or none at all), goes as one 'M' message per shard on the
-- shard's channel (enqueue-many-4.lua's), and a shard's bigger than the cap as a wake-up naming
-- the holder, 'W' followed by its consumer name (a worker that is not the holder leaves it alone).
-- A guarded entry (enqueue-many-4) is appended only while its guard key holds exactly the guard
-- value: a front that authenticated a request from its copy of the access token's record passes
-- the record's key and bytes, so the command is appended only if the token is still the same
-- (not revoked, the user not locked or suspended since: each of those deletes or rewrites the
-- record) — checked in the same call as the append, so nothing is appended for a token revoked
-- before it, and the front saves the round trip of reading the record first. A guard that does
-- not hold answers 'GUARD' for that entry (nothing appended; the asker authenticates afresh), and
-- a shard none of whose entries was appended is not woken.
-- KEYS: the inbox streams, lease hashes and guard keys the arguments name by index
-- ARGV[1]: ONE msgpack array (decoded here with cmsgpack; one argument instead of ~12 per message):
--   E entries, then per entry: inbox key index, guard key index (0: none), guard value ('' when
--   none), F (field count, even), then F values (field, value, …)
-- ARGV[2]: the inbox consumer group ('' : no push delivery, wake-ups only)
-- ARGV[3]: at most this many entries pushed per shard and call
-- ARGV[4]: at most this many bytes in one push message (a holder's: one per shard; a shard's: 'W')
-- ARGV[5]: the holders' push channel prefix: a holder's channel is this followed by its consumer name
-- ARGV[6]: the index in KEYS of this call's record (0: none), ARGV[7] how long it is kept (seconds)
-- ARGV[8..]: per woken shard: its wake-up channel, inbox key index, lease key index (0: wake-up only)
-- The call's record holds its answer once it has run: the same call run again (ioredis sends a
-- command again when its connection dropped before the answer came: the call may have run) finds
-- it and gives that answer, appending nothing. Without it an entry would be appended twice under
-- one message id, and a message whose id its asker minted has no done record to catch the second
-- (commit-many-7.lua: such a message is deduplicated by its pending entry alone).
-- (enqueue-many-5.lua had no record: every message had a done record then.)
-- The push message (src/runtime/envelope.ts parseHolderPush): 'N', then two msgpack values packed by
-- cmsgpack: the holder's consumer name, and XREADGROUP's answer as it gave it, {{inbox, {{id,
-- {field, value, ...}}, ...}}, ...}; per shard ('M', parsePackedPush): the consumer name and the
-- shard's entries. (enqueue-many-2.lua built a 'P' message of length-prefixed strings with
-- struct.pack, one call and one Lua string per value: ~3.5 of its ~20 µs a message in Redis;
-- cmsgpack packs the reply's table in one C call.)
-- Returns one value per entry: 1 when appended, 'GUARD' when its guard did not hold, else the
-- error text of its XADD alone (the other entries are appended all the same).
local callKey = tonumber(ARGV[6]) > 0 and KEYS[tonumber(ARGV[6])] or nil
if callKey then
  local ran = redis.call('GET', callKey)
  if ran then return cmsgpack.unpack(ran) end
end
local A = cmsgpack.unpack(ARGV[1])
local out = {}
-- Inbox key indices with an entry appended by this call: only their shards are woken below.
local appended = {}
local p = 2
for e = 1, tonumber(A[1]) do
  local key = KEYS[tonumber(A[p])]
  local guard = tonumber(A[p + 1])
  local f = tonumber(A[p + 3])
  local held = true
  if guard > 0 then
    -- pcall: a guard key of another type (not the record) is a guard that does not hold.
    local cur = redis.pcall('GET', KEYS[guard])
    held = type(cur) == 'string' and cur == A[p + 2]
  end
  if not held then
    out[e] = 'GUARD'
  else
    local r = redis.pcall('XADD', key, '*', unpack(A, p + 4, p + 3 + f))
    if type(r) == 'table' and r.err then
      out[e] = r.err
    else
      out[e] = 1
      appended[tonumber(A[p])] = true
    end
  end
  p = p + 4 + f
end
local group = ARGV[2]
local limit = tonumber(ARGV[3])
local maxBytes = tonumber(ARGV[4])
local pushPrefix = ARGV[5]
-- The shards to push, per holder, in the order first woken; each inbox's wake-up channel.
local holders, holderOrder, channelOf = {}, {}, {}
for i = 8, #ARGV, 3 do
  if appended[tonumber(ARGV[i + 1])] then
    local channel, inbox, leaseIdx = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
    local owner = false
    if group ~= '' and leaseIdx > 0 then owner = redis.call('HGET', KEYS[leaseIdx], 'owner') end
    local push = false
    if owner and owner ~= '' then
      -- Entries pending for another consumer (a holder that stalled past its lease and read on)
      -- were delivered before the new ones and reach the holder only through its read, which claims
      -- them first: a push would be applied over them. Then the holder gets the plain wake-up.
      push = true
      local s = redis.pcall('XPENDING', inbox, group)
      if type(s) == 'table' and not s.err and s[4] then
        for _, c in ipairs(s[4]) do
          if c[1] ~= owner then
            push = false
            break
          end
        end
      end
    end
    if push then
      local l = holders[owner]
      if l == nil then
        l = {}
        holders[owner] = l
        holderOrder[#holderOrder + 1] = owner
      end
      l[#l + 1] = inbox
      channelOf[inbox] = channel
    else
      redis.call('PUBLISH', channel, '1')
    end
  end
end
for _, owner in ipairs(holderOrder) do
  local inboxes = holders[owner]
  local n = #inboxes
  local read = {'XREADGROUP', 'GROUP', group, owner, 'COUNT', limit, 'STREAMS'}
  for j = 1, n do
    read[7 + j] = inboxes[j]
    read[7 + n + j] = '>'
  end
  -- One read for all of them. It fails as a whole, having read nothing, when one inbox has no
  -- group (a shard being taken): then each is read on its own, so the others still get their push.
  local r = redis.pcall(unpack(read))
  if type(r) == 'table' and r.err then
    r = {}
    for _, inbox in ipairs(inboxes) do
      local one = redis.pcall('XREADGROUP', 'GROUP', group, owner, 'COUNT', limit, 'STREAMS', inbox, '>')
      if type(one) == 'table' and not one.err and one[1] then r[#r + 1] = one[1] end
    end
  end
  local pushed = {}
  if type(r) == 'table' and #r > 0 then
    local packed = cmsgpack.pack(owner, r)
    -- Whether the holder listens on its push channel: PUBLISH's own count would include pattern
    -- subscribers (a PSUBSCRIBE to '*' in a Redis console), taken for a holder that does.
    local listens = redis.call('PUBSUB', 'NUMSUB', pushPrefix .. owner)[2] > 0
    if listens and #packed <= maxBytes then
      redis.call('PUBLISH', pushPrefix .. owner, 'N' .. packed)
      for _, part in ipairs(r) do pushed[part[1]] = true end
    else
      -- Too big for one message, or nobody listens on the holder's push channel: each shard's
      -- entries on the shard's own channel, as enqueue-many-4.lua sent them (a holder of that
      -- version takes them; a worker that still believes it holds the shard leaves them alone,
      -- since they name another holder, where a wake-up would have it read and claim them).
      for _, part in ipairs(r) do
        local one = cmsgpack.pack(owner, part[2])
        if #one <= maxBytes then
          redis.call('PUBLISH', channelOf[part[1]], 'M' .. one)
        else
          -- Read for the holder but too big to push: a wake-up naming it ('W'), so that a worker
          -- that still believes it holds the shard does not read and claim them (an older worker
          -- takes any message it does not know for a plain wake-up).
          redis.call('PUBLISH', channelOf[part[1]], 'W' .. owner)
        end
        pushed[part[1]] = true
      end
    end
  end
  -- The rest: nothing new read for them (another read got there first), or no read at all.
  for _, inbox in ipairs(inboxes) do
    if not pushed[inbox] then redis.call('PUBLISH', channelOf[inbox], '1') end
  end
end
if callKey then redis.call('SET', callKey, cmsgpack.pack(out), 'EX', ARGV[7]) end
return out
