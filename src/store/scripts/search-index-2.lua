-- Put one document's terms into a room's search index (format 2: binary postings, see
-- src/store/keys.ts `searchData` and src/search/index-store.ts), or take a redacted one out.
--
-- Compare-and-set on the document record: the caller read the record, worked out the terms of the
-- content indexed now (by tokenising again the stored event that carried it: the index keeps no
-- per-document term lists), and says which record it expects; if the record changed meanwhile,
-- nothing is written and -1 comes back (the caller reads again). As the record says which content
-- is indexed (the position of the event that carried it), a redelivered outbox entry, or an older
-- content arriving after a newer one, changes nothing; a redacted document stays out for good.
--
-- KEYS[1] docs (hash: bucket -> 16-byte records), KEYS[2] terms (zset), KEYS[3] stats (hash n, l, p),
-- KEYS[4] dead (set of positions). Postings and block bounds keys are named from ARGV[2], ARGV[3]
-- (the same room, so the same hash slot).
-- ARGV[1] 'index' or 'remove'; ARGV[2] postings key prefix; ARGV[3] block bounds key prefix;
-- ARGV[4] the document's position; ARGV[5] the expected record: '' none, else '<source>:<flags>';
-- ARGV[6] N, the number of terms indexed for it now (-1: not known, for 'remove' of a document
-- whose text is gone), ARGV[7..6+N] those terms.
-- For 'index', then: position of the event carrying the content, origin_server_ts, key (0 body,
-- 1 name, 2 topic), length in words, then term, frequency pairs.
-- Returns 1 when the index changed, 0 when there was nothing to do, -1 when the record was not the expected one.
local docs, vocab, stats, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, pprefix, bprefix = ARGV[1], ARGV[2], ARGV[3]
local pos = tonumber(ARGV[4])
local BLOCK = 128
local REC = '>i4i4I6BB'

local bucket = tostring(math.floor(pos / 64))
local recs = redis.call('HGET', docs, bucket) or ''
local at, insertAt = nil, #recs + 1
for i = 1, #recs, 16 do
  local p = struct.unpack('>i4', recs, i)
  if p == pos then
    at = i
    break
  end
  if p > pos then
    insertAt = i
    break
  end
end
local old, current = nil, ''
if at then
  local _, src, ts, len, flags = struct.unpack(REC, recs, at)
  old = { src = src, ts = ts, len = len, flags = flags }
  current = tostring(src) .. ':' .. tostring(flags)
end
if current ~= ARGV[5] then
  return -1
end
if old and old.flags % 2 == 1 then
  return 0
end
local counted = old ~= nil and math.floor(old.flags / 2) % 2 == 1

local function entryPos(key, i)
  return (struct.unpack('>i4', redis.call('GETRANGE', key, i * 6, i * 6 + 3)))
end

-- The index (0-based) of the first entry at or after `pos`, by binary search over the fixed-width entries.
local function lowerBound(key, n)
  local lo, hi = 0, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if entryPos(key, mid) < pos then
      lo = mid + 1
    else
      hi = mid
    end
  end
  return lo
end

-- Recompute the block bounds from the block holding entry `from` on (only long postings have them).
local function refreshBounds(term, key, n, from)
  local bkey = bprefix .. term
  if n <= BLOCK then
    redis.call('DEL', bkey)
    return
  end
  local have = redis.call('STRLEN', bkey)
  local first = math.floor(from / BLOCK)
  if have < first * 2 then
    first = 0
  end
  local data = redis.call('GETRANGE', key, first * BLOCK * 6, n * 6 - 1)
  local blocks = math.ceil(n / BLOCK) - first
  local out = {}
  for b = 0, blocks - 1 do
    local maxTf, minLen = 0, 255
    for i = b * BLOCK * 6 + 1, math.min(#data, (b + 1) * BLOCK * 6), 6 do
      local tk, len = string.byte(data, i + 4, i + 5)
      local tf = math.floor(tk / 4)
      if tf > maxTf then
        maxTf = tf
      end
      if len < minLen then
        minLen = len
      end
    end
    out[#out + 1] = string.char(maxTf, minLen)
  end
  local packed = table.concat(out)
  if have > (first + blocks) * 2 then
    local head = first > 0 and redis.call('GETRANGE', bkey, 0, first * 2 - 1) or ''
    redis.call('SET', bkey, head .. packed)
  else
    redis.call('SETRANGE', bkey, first * 2, packed)
  end
end

local function addPosting(term, entry)
  local key = pprefix .. term
  local n = redis.call('STRLEN', key) / 6
  local i
  if n == 0 then
    redis.call('SET', key, entry)
    redis.call('ZADD', vocab, 0, term)
    return
  elseif entryPos(key, n - 1) < pos then
    -- The usual case: the newest event of the room, appended; its block's bounds updated in place.
    redis.call('APPEND', key, entry)
    n = n + 1
    if n <= BLOCK then
      return
    else
      local bkey = bprefix .. term
      local b = math.floor((n - 1) / BLOCK)
      local have = redis.call('STRLEN', bkey)
      local tf, len = math.floor(string.byte(entry, 5) / 4), string.byte(entry, 6)
      if have == b * 2 + 2 then
        local bound = redis.call('GETRANGE', bkey, b * 2, b * 2 + 1)
        local maxTf, minLen = string.byte(bound, 1, 2)
        redis.call('SETRANGE', bkey, b * 2, string.char(math.max(maxTf, tf), math.min(minLen, len)))
        return
      elseif have == b * 2 and (n - 1) % BLOCK == 0 then
        redis.call('APPEND', bkey, string.char(tf, len))
        return
      end
    end
    i = n - 1
  else
    i = lowerBound(key, n)
    if i < n and entryPos(key, i) == pos then
      redis.call('SETRANGE', key, i * 6, entry)
    else
      local all = redis.call('GET', key)
      redis.call('SET', key, string.sub(all, 1, i * 6) .. entry .. string.sub(all, i * 6 + 1))
      n = n + 1
    end
  end
  refreshBounds(term, key, n, i)
end

local function removePosting(term)
  local key = pprefix .. term
  local n = redis.call('STRLEN', key) / 6
  if n == 0 then
    return
  end
  local i = lowerBound(key, n)
  if i >= n or entryPos(key, i) ~= pos then
    return
  end
  if n == 1 then
    redis.call('DEL', key, bprefix .. term)
    redis.call('ZREM', vocab, term)
    return
  end
  local all = redis.call('GET', key)
  redis.call('SET', key, string.sub(all, 1, i * 6) .. string.sub(all, i * 6 + 7))
  refreshBounds(term, key, n - 1, i)
end

local function writeRecord(rec)
  if at then
    recs = string.sub(recs, 1, at - 1) .. rec .. string.sub(recs, at + 16)
  else
    recs = string.sub(recs, 1, insertAt - 1) .. rec .. string.sub(recs, insertAt)
  end
  redis.call('HSET', docs, bucket, recs)
end

local nOld = tonumber(ARGV[6])
local idx = 7
local oldTerms = {}
for _ = 1, math.max(nOld, 0) do
  oldTerms[#oldTerms + 1] = ARGV[idx]
  idx = idx + 1
end

if op == 'remove' then
  if counted then
    if nOld >= 0 then
      for _, t in ipairs(oldTerms) do
        removePosting(t)
      end
    else
      -- Its text is gone (a redacted message): its postings stay until a rebuild, skipped by queries.
      redis.call('SADD', dead, pos)
    end
    redis.call('HINCRBY', stats, 'n', -1)
    redis.call('HINCRBY', stats, 'l', -old.len)
  end
  writeRecord(struct.pack(REC, pos, old and old.src or pos, old and old.ts or 0, old and old.len or 0, 1))
  return 1
end

local src, ts, key, len = tonumber(ARGV[idx]), tonumber(ARGV[idx + 1]), tonumber(ARGV[idx + 2]), math.min(tonumber(ARGV[idx + 3]), 255)
idx = idx + 4
if old and old.src >= src then
  return 0
end
if counted then
  for _, t in ipairs(oldTerms) do
    removePosting(t)
  end
  redis.call('HINCRBY', stats, 'n', -1)
  redis.call('HINCRBY', stats, 'l', -old.len)
end
local count = 0
for i = idx, #ARGV, 2 do
  local tf = math.min(tonumber(ARGV[i + 1]), 63)
  addPosting(ARGV[i], struct.pack('>i4BB', pos, tf * 4 + key, len))
  count = count + 1
end
local flags = 0
if count > 0 then
  flags = 2
  redis.call('HINCRBY', stats, 'n', 1)
  redis.call('HINCRBY', stats, 'l', len)
  local top = redis.call('HGET', stats, 'p')
  if not top or pos > tonumber(top) then
    redis.call('HSET', stats, 'p', pos)
  end
end
writeRecord(struct.pack(REC, pos, src, ts, len, flags))
return 1
