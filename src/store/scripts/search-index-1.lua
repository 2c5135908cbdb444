-- Put one event's text into a room's search index, or take it out (src/search/indexer.ts).
-- Idempotent: the document record says which content is indexed (the timeline position of the
-- event that carried it: the event's own, or an edit's), so a redelivered outbox entry, or an
-- older content arriving after a newer one, changes nothing; a redacted event stays out for good.
-- KEYS[1] docs (hash: event id -> JSON document), KEYS[2] terms (zset), KEYS[3] stats (hash n, l).
-- The postings hashes are named from ARGV[2] (the same room, so the same hash slot).
-- ARGV[1] 'index' or 'remove'; ARGV[2] postings key prefix; ARGV[3] event id
-- For 'index': ARGV[4] position of the event carrying the content, ARGV[5] the event's position,
--   ARGV[6] its origin_server_ts, ARGV[7] key (b/n/t), ARGV[8] length in words, then term, frequency pairs.
-- Returns 1 when the index changed, 0 otherwise.
local docs, termsKey, stats = KEYS[1], KEYS[2], KEYS[3]
local op, prefix, eventId = ARGV[1], ARGV[2], ARGV[3]

local function unindex(doc)
  if next(doc.t) == nil then
    return
  end
  for term, _ in pairs(doc.t) do
    local postings = prefix .. term
    redis.call('HDEL', postings, eventId)
    if redis.call('EXISTS', postings) == 0 then
      redis.call('ZREM', termsKey, term)
    end
  end
  redis.call('HINCRBY', stats, 'n', -1)
  redis.call('HINCRBY', stats, 'l', -doc.l)
end

local raw = redis.call('HGET', docs, eventId)
local old = raw and cjson.decode(raw) or nil
if old and old.x then
  return 0
end

if op == 'remove' then
  if old then
    unindex(old)
  end
  redis.call('HSET', docs, eventId, '{"x":1}')
  return 1
end

local source = tonumber(ARGV[4])
if old and old.s >= source then
  return 0
end
if old then
  unindex(old)
end
local pos, ts, key, len = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
local doc = { s = source, p = tonumber(pos), o = tonumber(ts), k = key, l = len, t = {} }
local count = 0
for i = 9, #ARGV, 2 do
  local term, tf = ARGV[i], ARGV[i + 1]
  doc.t[term] = tonumber(tf)
  redis.call('HSET', prefix .. term, eventId, tf .. ':' .. len .. ':' .. pos .. ':' .. ts .. ':' .. key)
  redis.call('ZADD', termsKey, 0, term)
  count = count + 1
end
redis.call('HSET', docs, eventId, cjson.encode(doc))
if count == 0 then
  -- Nothing to find (an edit to an empty body): recorded, so older content stays out, but not counted.
  return 1
end
redis.call('HINCRBY', stats, 'n', 1)
redis.call('HINCRBY', stats, 'l', len)
return 1
