-- The start of a /sync computation on a single Redis (src/sync/engine.ts, takeSnapshot): the cut
-- (TIME), the user's membership index and the device's own streams below the cut, read atomically
-- in one call. Every woken long-poll used to read these with six commands (the snapshot script,
-- the partial-state hash, XINFO and XRANGE of the feed, two XRANGEs of the to-device inbox); each
-- command costs the front ~20-40 µs to build, write and parse, Redis a few. (On a Cluster the cut
-- is the earliest of the masters' clocks and all of this is read apart: not this script.)
-- KEYS[1] the user's joined-rooms index (`membershipIndexData.rooms`, hash)
-- KEYS[2] when each of its entries was written (`membershipIndexData.writtenAt`, hash)
-- KEYS[3] the user's forgotten rooms (`membershipIndexData.forgotten`, set)
-- KEYS[4] the rooms joined with partial state (`partialStateRooms`, hash; another slot: single Redis only)
-- KEYS[5] the user's feed (device list and presence changes, stream)
-- KEYS[6] the device's to-device inbox (stream)
-- KEYS[7..] outbox streams (of the user's shard and their rooms' shards; other slots: single Redis
--         only) whose front cache holds them up to some millisecond: their next part is read here
--         instead of with one XRANGE each after this call (src/sync/outbox-cache.ts, `absorb`)
-- ARGV[1] the feed window's start: '' for all of it, else its first ms (`<ms>-0` and on, and XINFO
--         to tell whether trimming lost part of it)
-- ARGV[2] the to-device read's start: '' for the inbox's start, else the id after which to read
-- ARGV[3] how many to-device entries to read at most
-- ARGV[4] the to-device acknowledgement's bound: '' for none, else an id; the reply says whether
--         some entry lies below it (only then does the owning actor have anything to delete)
-- ARGV[5..] per KEYS[7..], the millisecond its cached part ends at: entries from `<ms>-0` on are read
-- Returns {TIME, HGETALL KEYS[1], HGETALL KEYS[2], SMEMBERS KEYS[3], HLEN KEYS[4],
--          feed XINFO STREAM (0: no feed, 1: not asked), feed entries, to-device entries, 1/0,
--          {entries of each KEYS[7..]}}.
-- Every stream read ends before `<cutMs>-0` (cutMs: the TIME's millisecond), as the windows do.
local time = redis.call('TIME')
local cutMs = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local before = '(' .. string.format('%.0f', cutMs) .. '-0'
local info = 1
local feed = {}
if ARGV[1] == '' then
  feed = redis.call('XRANGE', KEYS[5], '-', before)
elseif tonumber(ARGV[1]) < cutMs then
  if redis.call('EXISTS', KEYS[5]) == 0 then
    info = 0
  else
    info = redis.call('XINFO', 'STREAM', KEYS[5])
    feed = redis.call('XRANGE', KEYS[5], ARGV[1] .. '-0', before)
  end
end
local start = '-'
if ARGV[2] ~= '' then start = '(' .. ARGV[2] end
local toDevice = redis.call('XRANGE', KEYS[6], start, before, 'COUNT', tonumber(ARGV[3]))
local ack = 0
if ARGV[4] ~= '' and #redis.call('XRANGE', KEYS[6], '-', '(' .. ARGV[4], 'COUNT', 1) > 0 then ack = 1 end
local outboxes = {}
for i = 7, #KEYS do
  local from = tonumber(ARGV[i - 2])
  if from < cutMs then outboxes[i - 6] = redis.call('XRANGE', KEYS[i], ARGV[i - 2] .. '-0', before) else outboxes[i - 6] = {} end
end
return { time, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('SMEMBERS', KEYS[3]), redis.call('HLEN', KEYS[4]), info, feed, toDevice, ack, outboxes }
