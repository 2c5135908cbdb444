-- The start of /sync computations on a single Redis (src/sync/engine.ts, takeSnapshot; batched by
-- src/sync/snapshot-batch.ts): one cut (TIME) and, for each computation of the batch, the user's
-- membership index and the device's own streams below the cut, read atomically in one call. Every
-- woken long-poll used to read these with six commands (the snapshot script, the partial-state
-- hash, XINFO and XRANGE of the feed, two XRANGEs of the to-device inbox), then with one call of
-- sync-snapshot-2 each; the computations a wake-up starts together now share one call and one cut
-- (so their next polls share a `since`, and their windows). (On a Cluster the cut is the earliest
-- of the masters' clocks and all of this is read apart: not this script.)
-- ARGV[1] S, the computations in the batch; ARGV[2] M, the outbox streams read for them
-- Per computation s (0-based), KEYS[6s+1 .. 6s+6] and ARGV[2+4s+1 .. 2+4s+4]:
--   KEYS 1 the user's joined-rooms index (`membershipIndexData.rooms`, hash)
--   KEYS 2 when each of its entries was written (`membershipIndexData.writtenAt`, hash)
--   KEYS 3 the user's forgotten rooms (`membershipIndexData.forgotten`, set)
--   KEYS 4 the rooms joined with partial state (`partialStateRooms`, hash; another slot: single Redis only)
--   KEYS 5 the user's feed (device list and presence changes, stream)
--   KEYS 6 the device's to-device inbox (stream)
--   ARGV 1 the feed window's start: '' for all of it, else its first ms (`<ms>-0` and on, and XINFO
--          to tell whether trimming lost part of it: judged here, see `lostSince` below)
--   ARGV 2 the to-device read's start: '' for the inbox's start, else the id after which to read
--   ARGV 3 how many to-device entries to read at most
--   ARGV 4 the to-device acknowledgement's bound: '' for none, else an id; the reply says whether
--          some entry lies below it (only then does the owning actor have anything to delete)
-- Then KEYS[6S+1 .. 6S+M]: outbox streams (of the users' shards and their rooms' shards; other
-- slots: single Redis only) whose front cache holds them up to some millisecond, given in
-- ARGV[2+4S+1 .. 2+4S+M]: their part from `<ms>-0` on is read here instead of with one XRANGE each
-- after this call (src/sync/outbox-cache.ts, `absorb`); each stream once for the whole batch.
-- Returns {TIME, {per computation: {HGETALL KEYS 1, HGETALL KEYS 2, SMEMBERS KEYS 3, HLEN KEYS 4,
--          the feed's trimming check (0: no feed, 1: not asked, 2: nothing lost, 3: may have lost
--          entries at or after ARGV 1), feed entries, to-device entries, 1/0}},
--          {entries of each outbox stream}}.
-- (sync-snapshot-2 served one computation and returned the whole XINFO STREAM reply — its first
-- and last entries with all their fields — for the front to judge.)
-- Every stream read ends before `<cutMs>-0` (cutMs: the TIME's millisecond), as the windows do.

-- Whether a stream may have lost entries with ids at or after `<sinceMs>-0`, from its XINFO
-- STREAM (as src/sync/outbox-cache.ts `lostFromInfo`): XDEL moves max-deleted-entry-id; XTRIM
-- only shows in the counts (fewer entries than were ever added: the oldest went, all below the
-- first entry left), so a first entry after `<sinceMs>-0` may mean some of the window went.
local function msOf(id)
  return tonumber(string.match(id, '^(%d+)'))
end
local function lostSince(stream, sinceMs)
  local info = redis.call('XINFO', 'STREAM', stream)
  local f = {}
  for i = 1, #info, 2 do f[info[i]] = info[i + 1] end
  local maxDeleted = f['max-deleted-entry-id'] or '0-0'
  if maxDeleted ~= '0-0' and msOf(maxDeleted) >= sinceMs then return true end
  local length = tonumber(f['length'] or 0)
  local added = tonumber(f['entries-added'] or length)
  if added <= length then return false end
  local firstId = f['last-generated-id']
  local first = f['first-entry']
  if type(first) == 'table' and first[1] then firstId = first[1] end
  local firstMs = msOf(firstId or '0-0')
  return firstMs > sinceMs or (firstMs == sinceMs and firstId ~= string.format('%.0f', sinceMs) .. '-0')
end

local time = redis.call('TIME')
local cutMs = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local before = '(' .. string.format('%.0f', cutMs) .. '-0'
local segments = tonumber(ARGV[1])
local streams = tonumber(ARGV[2])
local out = {}
for s = 0, segments - 1 do
  local k = s * 6
  local a = 2 + s * 4
  local info = 1
  local feed = {}
  local feedFrom = ARGV[a + 1]
  if feedFrom == '' then
    feed = redis.call('XRANGE', KEYS[k + 5], '-', before)
  elseif tonumber(feedFrom) < cutMs then
    if redis.call('EXISTS', KEYS[k + 5]) == 0 then
      info = 0
    else
      if lostSince(KEYS[k + 5], tonumber(feedFrom)) then info = 3 else info = 2 end
      feed = redis.call('XRANGE', KEYS[k + 5], feedFrom .. '-0', before)
    end
  end
  local start = '-'
  if ARGV[a + 2] ~= '' then start = '(' .. ARGV[a + 2] end
  local toDevice = redis.call('XRANGE', KEYS[k + 6], start, before, 'COUNT', tonumber(ARGV[a + 3]))
  local ack = 0
  if ARGV[a + 4] ~= '' and #redis.call('XRANGE', KEYS[k + 6], '-', '(' .. ARGV[a + 4], 'COUNT', 1) > 0 then ack = 1 end
  out[s + 1] = { redis.call('HGETALL', KEYS[k + 1]), redis.call('HGETALL', KEYS[k + 2]), redis.call('SMEMBERS', KEYS[k + 3]), redis.call('HLEN', KEYS[k + 4]), info, feed, toDevice, ack }
end
local outboxes = {}
local k0 = segments * 6
local a0 = 2 + segments * 4
for i = 1, streams do
  local from = ARGV[a0 + i]
  if tonumber(from) < cutMs then outboxes[i] = redis.call('XRANGE', KEYS[k0 + i], from .. '-0', before) else outboxes[i] = {} end
end
return { time, out, outboxes }
