-- Apply the decisions of several actors exactly once, in one script call (src/runtime/commit-queue.ts):
-- each unit is one actor's commit (one or more of its inbox messages decided in order), and the
-- units may belong to different actors of one shard or, on a single Redis, to different shards of
-- one worker. One call, one AOF write and fsync, for all of them.
-- Each unit stands on its own: its shard's fencing token is checked (once per shard and call),
-- its messages' done records are checked, and only then are its writes, outputs, state, done
-- records, replies and acknowledgements written. A unit refused (stale lease, a message already
-- done) writes nothing and does not stop the others, which are independent (other actors). Every
-- command of every unit is checked against the allowed list before anything is written, so a
-- refused command fails the whole call with nothing applied.
-- A command of a unit that fails when it runs (a key of the wrong type, an XADD id below the
-- stream's top: data that is not what the actor believes) fails that unit alone: it is answered
-- {'err', text}, its done records are removed again and its state is not written, so it is not
-- taken for applied and its messages are decided again (and dead-lettered if it keeps failing);
-- the other units of the call are committed as if it were not there. Redis cannot take back what
-- the unit wrote before the failing command: its writes run first, in order, then its outputs,
-- then its state, so what it leaves is a prefix of its writes (idempotent ones, as actors write
-- them: SET, HSET, ZADD ... of the values the retry writes again), not outputs the readers would
-- see twice. (commit-many-4 wrote every state in one MSET at the end of the call: a command error
-- in a later unit left the earlier units recorded done without their states, answered 'dup' —
-- applied — on the retry. Now each unit's state is written with its unit.)
-- KEYS: the shards' lease, inbox and outbox streams and the reply streams, named below by index.
-- The keys of the actors themselves (done records, states, data) are not in KEYS: they are the
-- shard's key prefixes (src/store/keys.ts ShardKeys, passed once per shard and call) followed by
-- the message id, the kind and actor id, or the write's name. A hundred room events name some 700
-- such keys; as KEYS each is one more argument for the client to write and for Redis to parse and
-- turn into a Lua string, and they went with every call (issue 23: per-unit cost). They share
-- the shard's hash tag, so on a Cluster (one shard a call) they are in the slot of the declared
-- keys, as Redis requires of a script's keys there.
-- ARGV[1]: the arguments below as ONE msgpack array, A (decoded here with cmsgpack). Indices below
-- are into A.
-- A[1] worker id
-- A[2] inbox consumer group
-- A[3] dedupe window (seconds)
-- A[4] approximate max length of reply streams
-- A[5] number of shards S, then per shard: lease key index, fencing token, inbox key index,
--   outbox key index, done-record prefix, state prefix, data prefix
-- then the number of units U, then per unit:
--   shard number (1..S), M, then per message: inbox entry id, reply blob, ack mode, reply key index, mid
--     ack mode: '1' XACK here (nobody waits for a reply); '0' the caller acks after delivering
--     the reply (a Cluster: the reply stream is in another slot); 'r' deliver the reply to the
--     reply key here (only while that stream exists, as reply-1.lua) and XACK, atomic with the commit
--   state mode ('k' keep, 's' set), state blob,
--   N outputs, N blobs, actor id, kind,
--   W writes, then per write: command, key (a data name, or a full key name when the next value
--   is '1'), '0' or '1', argument count, arguments
-- Each message's done record is written first, with SET NX GET: one command both checks that the
-- message was not done already and records it (a unit found done has the records it wrote removed
-- again) — unless its id was minted by its asker and it is acknowledged here: then its inbox entry
-- still pending is the check, and there is no record. That check is the entry's own XACK, made
-- first (see the loop below).
-- The replies of a call to one reply stream go as ONE stream entry with a (mid, b) pair per reply
-- (src/runtime/actor-client.ts reads every pair of an entry): one XADD per asking process and
-- call instead of one per message.
-- Returns one entry per unit: {'ok'}, {'stale', owner}, {'dup', reply} (M = 1: the message was done
-- already; its stored reply delivered and acked as its mode says), {'dup'} (M > 1: nothing
-- written; the caller applies the messages one by one; or a message deduplicated by its pending
-- entry, below, found applied: its reply and acknowledgement went with the commit that applied
-- it) or {'err', text} (a command of the unit failed, as above).
-- (commit-many-5.lua wrote a done record for every message; commit-many-6.lua checked a minted
-- id's entry with an XPENDING of its id and acknowledged it with the others at the end: one command
-- more per inbox and call, and XPENDING's answer a table for Lua to build — bench:runtime Redis
-- 30 -> 27 us a message, issue 23.)
local ARGV = cmsgpack.unpack(ARGV[1])
local worker = ARGV[1]
local group = ARGV[2]
local ttl = tostring(ARGV[3])
local maxlen = tostring(ARGV[4])
local nShards = tonumber(ARGV[5])
local allowed = {SET=1, DEL=1, HSET=1, HDEL=1, HINCRBY=1, ZADD=1, ZREM=1, SADD=1, SREM=1, RPUSH=1, LTRIM=1, XADD=1, XTRIM=1, PEXPIRE=1, INCRBY=1}
local chunked = {HSET=2, ZADD=2, SADD=1, SREM=1, HDEL=1, ZREM=1, DEL=1, RPUSH=1}
local CHUNK = 4000

-- The shards: each one's keys and prefixes, and its fencing (checked at its first unit).
local shards = {}
local p = 6
for s = 1, nShards do
  shards[s] = {
    lease = KEYS[tonumber(ARGV[p])], token = ARGV[p + 1], inbox = KEYS[tonumber(ARGV[p + 2])],
    outbox = KEYS[tonumber(ARGV[p + 3])], done = ARGV[p + 4], state = ARGV[p + 5], data = ARGV[p + 6],
  }
  p = p + 7
end
local units = tonumber(ARGV[p])
p = p + 1

-- First pass: where each unit's parts start, and every command checked.
local starts = {}
for u = 1, units do
  starts[u] = p
  local m = tonumber(ARGV[p + 1])
  p = p + 2 + 5 * m + 2
  local n = tonumber(ARGV[p])
  p = p + n + 3
  local w = tonumber(ARGV[p])
  p = p + 1
  for _ = 1, w do
    if not allowed[ARGV[p]] then
      return redis.error_reply('commit-many: command not allowed: ' .. ARGV[p])
    end
    p = p + 4 + tonumber(ARGV[p + 3])
  end
end

local function fenced(shard)
  local r = shard.fenced
  if r == nil then
    local f = redis.call('HMGET', shard.lease, 'owner', 'token')
    if f[1] == worker and f[2] == shard.token then r = false else r = f[1] or '' end
    shard.fenced = r
  end
  return r
end
-- The list kept under `key` in `lists`, made (and `key` added to `order`) the first time.
local function listFor(lists, order, key)
  local l = lists[key]
  if l == nil then
    l = {}
    lists[key] = l
    order[#order + 1] = key
  end
  return l
end
-- Replies collected per reply stream, delivered at the end (only to a stream that exists, as
-- reply-1.lua says why), several to an entry.
local replies = {}
local replyOrder = {}
local function reply(idx, mid, blob)
  local l = listFor(replies, replyOrder, KEYS[tonumber(idx)])
  l[#l + 1] = 'mid'
  l[#l + 1] = mid
  l[#l + 1] = 'b'
  l[#l + 1] = blob
end

-- Acknowledgements of the messages with a done record are collected per inbox and sent as one XACK
-- each at the end (one command, and one AOF entry, per inbox and call instead of per message; the
-- call is atomic either way). A message deduplicated by its pending entry was acknowledged by its
-- check already.
local acks = {}
local ackOrder = {}
local function ack(inbox, id)
  local l = listFor(acks, ackOrder, inbox)
  l[#l + 1] = id
end
-- Whether a message is deduplicated by its pending entry rather than a done record (see below).
local function madeUp(mid, mode)
  return mode ~= '0' and string.byte(mid, 1) == 126
end
-- Remove the done records of a unit's first n messages (those it wrote before finding one done,
-- or all of a unit that failed).
local function undoDone(donePrefix, msgs, n)
  for j = 0, n - 1 do
    local e = msgs + 5 * j
    if not madeUp(ARGV[e + 4], ARGV[e + 2]) then redis.call('DEL', donePrefix .. ARGV[e + 4]) end
  end
end
-- Make pending again, for this worker, the entries a unit acknowledged in its check and then did
-- not apply (a later message of the unit found done, or a command of the unit failed): XCLAIM's
-- FORCE puts an entry that is still in the stream back in the pending list, so it is decided again,
-- as if never acknowledged. Its delivery count starts again at 1: the runner counts the attempts
-- of a failing unit itself (and dead-letters it), the pending list's count only across crashes.
local function restore(inbox, ids)
  if #ids == 0 then return end
  local c = {'XCLAIM', inbox, group, worker, 0}
  for _, id in ipairs(ids) do c[#c + 1] = id end
  c[#c + 1] = 'RETRYCOUNT'
  c[#c + 1] = 1
  c[#c + 1] = 'FORCE'
  c[#c + 1] = 'JUSTID'
  redis.call(unpack(c))
end
-- The current unit's first failing command, if any: run() goes through pcall, so an error fails
-- that unit, not the call.
local failed = nil
local function run(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then failed = r.err end
end

local out = {}
for u = 1, units do
  p = starts[u]
  local shard = shards[tonumber(ARGV[p])]
  local m = tonumber(ARGV[p + 1])
  local msgs = p + 2
  local owner = fenced(shard)
  if owner then
    out[u] = {'stale', owner}
  else
    -- Record each message done (its reply as the record) unless it is already: the check and
    -- the write in one command. A message found done undoes the records this unit wrote.
    -- A message whose id its asker made up ('~', src/runtime/actor-client.ts newMessageId: one
    -- inbox entry per id) and that is acknowledged here (mode '1' or 'r') needs no record: its
    -- entry still pending in the group says it was not applied, since the commit that applies it
    -- acknowledges it in the same call. The check is that acknowledgement, made now: XACK answers
    -- 1 for an entry that was pending (not applied; acknowledged from here on, and put back by
    -- restore() if the unit then writes nothing) and 0 for one that was not — done (`true`: a
    -- commit of ours whose answer was lost and that is sent again; its reply went out with it).
    local done = nil
    local donePrefix = shard.done
    local ackedHere = {}
    for i = 0, m - 1 do
      local e = msgs + 5 * i
      if madeUp(ARGV[e + 4], ARGV[e + 2]) then
        done = redis.call('XACK', shard.inbox, group, ARGV[e]) == 0
        if not done then ackedHere[#ackedHere + 1] = ARGV[e] end
      else
        done = redis.call('SET', donePrefix .. ARGV[e + 4], ARGV[e + 1], 'NX', 'GET', 'EX', ttl)
      end
      if done then
        undoDone(donePrefix, msgs, i)
        restore(shard.inbox, ackedHere)
        break
      end
    end
    if done == true then
      out[u] = {'dup'}
    elseif done and m == 1 then
      local mode = ARGV[msgs + 2]
      if mode == 'r' then reply(ARGV[msgs + 3], ARGV[msgs + 4], done) end
      if mode ~= '0' then ack(shard.inbox, ARGV[msgs]) end
      out[u] = {'dup', done}
    elseif done then
      out[u] = {'dup'}
    else
      local q = msgs + 5 * m
      local stateMode = ARGV[q]
      local stateBlob = ARGV[q + 1]
      q = q + 2
      local n = tonumber(ARGV[q])
      local outputs = q
      local actor = ARGV[q + n + 1]
      local kind = ARGV[q + n + 2]
      q = q + n + 3
      local w = tonumber(ARGV[q])
      q = q + 1
      local dataPrefix = shard.data
      failed = nil
      for _ = 1, w do
        local cmd = ARGV[q]
        local key = ARGV[q + 1]
        if ARGV[q + 2] ~= '1' then key = dataPrefix .. key end
        local argc = tonumber(ARGV[q + 3])
        if chunked[cmd] and argc > CHUNK then
          -- Lua's unpack takes at most ~8,000 values: a big write goes in slices (the same write).
          local first = q + 4
          local last = q + 3 + argc
          while first <= last and not failed do
            local upto = math.min(first + CHUNK - 1, last)
            run(cmd, key, unpack(ARGV, first, upto))
            first = upto + 1
          end
        else
          run(cmd, key, unpack(ARGV, q + 4, q + 3 + argc))
        end
        if failed then break end
        q = q + 4 + argc
      end
      local outbox = shard.outbox
      for i = 1, n do
        if failed then break end
        run('XADD', outbox, '*', 'a', actor, 'k', kind, 'b', ARGV[outputs + i])
      end
      if not failed and stateMode == 's' then run('SET', shard.state .. kind .. ':' .. actor, stateBlob) end
      if failed then
        undoDone(donePrefix, msgs, m)
        restore(shard.inbox, ackedHere)
        out[u] = {'err', failed}
      else
        for i = 0, m - 1 do
          local e = msgs + 5 * i
          local mode = ARGV[e + 2]
          if mode == 'r' then reply(ARGV[e + 3], ARGV[e + 4], ARGV[e + 1]) end
          if mode ~= '0' and not madeUp(ARGV[e + 4], mode) then ack(shard.inbox, ARGV[e]) end
        end
        out[u] = {'ok'}
      end
    end
  end
end
local PAIRS = 1000
for _, key in ipairs(replyOrder) do
  if redis.call('EXISTS', key) == 1 then
    local l = replies[key]
    for first = 1, #l, 4 * PAIRS do
      redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', unpack(l, first, math.min(first + 4 * PAIRS - 1, #l)))
    end
  end
end
for _, inbox in ipairs(ackOrder) do
  local ids = acks[inbox]
  for first = 1, #ids, CHUNK do
    redis.call('XACK', inbox, group, unpack(ids, first, math.min(first + CHUNK - 1, #ids)))
  end
end
return out
