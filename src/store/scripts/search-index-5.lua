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
-- Beside a long term's postings (more than TOP_MIN in the room) it keeps its best postings (see
-- `searchData.topPrefix`): at most TOP_CAP of the postings with the highest BM25 impact (term
-- frequency up, length down, for a reference average length), and a bound of all the others (the
-- Pareto frontier of their (frequency, length) pairs, only ever widened, so always a true bound).
-- A term past TOP_MIN without one (an index written before them) gets one the next time it is
-- written to.
--
-- Nothing once the room is being purged (its members hash, KEYS[5], is gone: actors/room.ts
-- decidePurgeBegin deletes it as the purge begins, before the purge's scan deletes the index a
-- batch at a time): a reader running behind the purge, or a rebuild, must not write a key the scan
-- has passed already, or recreate an index after the purge finished; nothing would delete it. The
-- hash exists from the room's first member event on (the creator's join, the second event of a
-- room made here; a room joined over federation gets it with the join): the only event before it,
-- the create event, has nothing to index.
--
-- (search-index-3.lua: without 'batch'; search-index-4.lua: without the purge guard, KEYS[5].)
--
-- KEYS[1] docs (hash: bucket -> 16-byte records), KEYS[2] terms (zset), KEYS[3] stats (hash n, l, p),
-- KEYS[4] dead (set of positions), KEYS[5] the room's members (hash, src/store/keys.ts
-- roomData.members: its absence refuses every write). Postings, block bounds and best postings
-- keys are named from ARGV[2], ARGV[3], ARGV[4] (all of them the same room's on the room's shard,
-- so the same hash slot).
-- ARGV[1] 'index', 'remove' or 'batch' (below: several new documents of the room in one call); ARGV[2] postings key prefix; ARGV[3] block bounds key prefix;
-- ARGV[4] best postings key prefix; ARGV[5] the document's position; ARGV[6] the expected record:
-- '' none, else '<source>:<flags>'; ARGV[7] N, the number of terms indexed for it now (-1: not
-- known, for 'remove' of a document whose text is gone), ARGV[8..7+N] those terms.
-- For 'index', then: position of the event carrying the content, origin_server_ts, key (0 body,
-- 1 name, 2 topic), length in words, then term, frequency pairs.
-- Returns 1 when the index changed, 0 when there was nothing to do (or the room is being purged),
-- -1 when the record was not the expected one ('batch': how many documents were indexed).
if redis.call('EXISTS', KEYS[5]) == 0 then
  return 0
end
local docs, vocab, stats, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, pprefix, bprefix, tprefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local BLOCK = 128
local TOP_MIN, TOP_CAP = 128, 64
local K1, B = 1.2, 0.75
local REC = '>i4i4I6BB'

-- The document written now (one per call, or each in turn for 'batch') and its record.
local pos, bucket, recs, at, insertAt, old, current

local function loadRecord()
  bucket = tostring(math.floor(pos / 64))
  recs = redis.call('HGET', docs, bucket) or ''
  at, insertAt = nil, #recs + 1
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
  old, current = nil, ''
  if at then
    local _, src, ts, len, flags = struct.unpack(REC, recs, at)
    old = { src = src, ts = ts, len = len, flags = flags }
    current = tostring(src) .. ':' .. tostring(flags)
  end
end

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

-- Best postings (see the head of this file). The string: uint8 reference average length, uint8 F,
-- uint8 frequency and uint8 length of the cut (a new posting goes in iff its impact is above the
-- cut's), F (frequency, length) pairs bounding every posting not in the list, then the list's
-- 6-byte postings (in no order).
local function impact(tf, len, ref)
  return tf / (tf + K1 * (1 - B + B * len / ref))
end

local function entryTfLen(e, i)
  local tk, len = string.byte(e, i + 4, i + 5)
  return math.floor(tk / 4), len
end

-- Add (tf, len) to a frontier unless a pair there dominates it (higher or equal frequency, shorter
-- or equal length); pairs it dominates go. Returns whether the frontier changed.
local function widen(front, tf, len)
  for _, f in ipairs(front) do
    if f[1] >= tf and f[2] <= len then
      return false
    end
  end
  local kept = {}
  for _, f in ipairs(front) do
    if not (f[1] <= tf and f[2] >= len) then
      kept[#kept + 1] = f
    end
  end
  kept[#kept + 1] = { tf, len }
  for i = 1, #front do
    front[i] = nil
  end
  for i, f in ipairs(kept) do
    front[i] = f
  end
  return true
end

local function readTop(s)
  local ref, nF, cutTf, cutLen = string.byte(s, 1, 4)
  local front = {}
  for j = 0, nF - 1 do
    front[#front + 1] = { string.byte(s, 5 + 2 * j, 6 + 2 * j) }
  end
  return { ref = ref, cutTf = cutTf, cutLen = cutLen, front = front, at = 5 + 2 * nF }
end

local function topEntries(s, t)
  local list = {}
  for i = t.at, #s, 6 do
    list[#list + 1] = string.sub(s, i, i + 5)
  end
  return list
end

local function writeTop(tkey, t, list)
  local out = { string.char(t.ref, #t.front, t.cutTf, t.cutLen) }
  for _, f in ipairs(t.front) do
    out[#out + 1] = string.char(f[1], f[2])
  end
  out[#out + 1] = table.concat(list)
  redis.call('SET', tkey, table.concat(out))
end

-- Build a term's best postings from its whole postings: the classes of (frequency, length) by
-- impact, as many whole classes from the top as fit in TOP_CAP, the frontier of the rest.
local function buildTop(term, key)
  local data = redis.call('GET', key) or ''
  local n, l = unpack(redis.call('HMGET', stats, 'n', 'l'))
  n, l = tonumber(n or 0), tonumber(l or 0)
  local ref = n > 0 and math.max(1, math.min(255, math.floor(l / n + 0.5))) or 12
  local classes, counts = {}, {}
  for i = 1, #data, 6 do
    local tf, len = entryTfLen(data, i)
    local c = tf * 256 + len
    if not counts[c] then
      counts[c] = 0
      classes[#classes + 1] = c
    end
    counts[c] = counts[c] + 1
  end
  local function imp(c)
    return impact(math.floor(c / 256), c % 256, ref)
  end
  table.sort(classes, function(a, b)
    local ia, ib = imp(a), imp(b)
    if ia ~= ib then
      return ia > ib
    end
    return a < b
  end)
  local inList, taken, cut = {}, 0, nil
  for _, c in ipairs(classes) do
    if cut == nil and taken + counts[c] <= TOP_CAP then
      inList[c] = true
      taken = taken + counts[c]
    else
      cut = cut or c
    end
  end
  local t = { ref = ref, cutTf = 0, cutLen = 255, front = {} }
  if cut then
    t.cutTf, t.cutLen = math.floor(cut / 256), cut % 256
  end
  for _, c in ipairs(classes) do
    if not inList[c] then
      widen(t.front, math.floor(c / 256), c % 256)
    end
  end
  local list = {}
  for i = 1, #data, 6 do
    local tf, len = entryTfLen(data, i)
    if inList[tf * 256 + len] then
      list[#list + 1] = string.sub(data, i, i + 5)
    end
  end
  writeTop(tprefix .. term, t, list)
end

-- A posting was added to a term that now has n postings.
local function topAdd(term, key, n, entry)
  if n <= TOP_MIN then
    return
  end
  local tkey = tprefix .. term
  -- The head: 4 bytes and at most 63 frontier pairs (one per frequency).
  local s = redis.call('GETRANGE', tkey, 0, 131)
  if s == '' then
    buildTop(term, key)
    return
  end
  local tf, len = entryTfLen(entry, 1)
  local ref, nF, cutTf, cutLen = string.byte(s, 1, 4)
  local below = impact(tf, len, ref) <= impact(cutTf, cutLen, ref)
  if below then
    -- The usual case (most postings of a long term are not among its best): bounded already?
    for j = 0, nF - 1 do
      local f, l = string.byte(s, 5 + 2 * j, 6 + 2 * j)
      if f >= tf and l <= len then
        return
      end
    end
  end
  s = redis.call('GET', tkey)
  local t = readTop(s)
  if below then
    if widen(t.front, tf, len) then
      writeTop(tkey, t, topEntries(s, t))
    end
    return
  end
  local list = topEntries(s, t)
  list[#list + 1] = entry
  -- Over the cap: the lowest class leaves the list for the frontier, and becomes the cut.
  while #list > TOP_CAP do
    local low, lowTf, lowLen = nil, 0, 0
    for _, e in ipairs(list) do
      local etf, elen = entryTfLen(e, 1)
      local v = impact(etf, elen, t.ref)
      if low == nil or v < low then
        low, lowTf, lowLen = v, etf, elen
      end
    end
    local kept = {}
    for _, e in ipairs(list) do
      local etf, elen = entryTfLen(e, 1)
      if impact(etf, elen, t.ref) > low then
        kept[#kept + 1] = e
      else
        widen(t.front, etf, elen)
      end
    end
    list = kept
    t.cutTf, t.cutLen = lowTf, lowLen
  end
  writeTop(tkey, t, list)
end

-- The posting at `pos` was taken from a term that now has n postings.
local function topRemove(term, key, n)
  local tkey = tprefix .. term
  if n <= TOP_MIN then
    redis.call('DEL', tkey)
    return
  end
  local s = redis.call('GET', tkey)
  if not s then
    return
  end
  local t = readTop(s)
  local list, found = {}, false
  for i = t.at, #s, 6 do
    if struct.unpack('>i4', s, i) == pos then
      found = true
    else
      list[#list + 1] = string.sub(s, i, i + 5)
    end
  end
  if not found then
    return
  end
  if #list < TOP_CAP / 4 then
    -- Few left: built again from the postings (the frontier narrows to what is there now).
    buildTop(term, key)
  else
    writeTop(tkey, t, list)
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
    topAdd(term, key, n, entry)
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
      if n > TOP_MIN then
        buildTop(term, key)
      end
    else
      local all = redis.call('GET', key)
      redis.call('SET', key, string.sub(all, 1, i * 6) .. entry .. string.sub(all, i * 6 + 1))
      n = n + 1
      topAdd(term, key, n, entry)
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
    redis.call('DEL', key, bprefix .. term, tprefix .. term)
    redis.call('ZREM', vocab, term)
    return
  end
  local all = redis.call('GET', key)
  redis.call('SET', key, string.sub(all, 1, i * 6) .. string.sub(all, i * 6 + 7))
  refreshBounds(term, key, n - 1, i)
  topRemove(term, key, n - 1)
end

local function writeRecord(rec)
  if at then
    recs = string.sub(recs, 1, at - 1) .. rec .. string.sub(recs, at + 16)
  else
    recs = string.sub(recs, 1, insertAt - 1) .. rec .. string.sub(recs, insertAt)
  end
  redis.call('HSET', docs, bucket, recs)
end

-- Index the document at `pos` (its old terms, if any, already out): terms ARGV[first..last] in
-- (term, frequency) pairs.
local function addDocument(src, ts, key, len, first, last)
  local count = 0
  for i = first, last, 2 do
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
end

if op == 'batch' then
  -- New documents of the room, each with its own content (position, origin_server_ts, key,
  -- length, N, then N term, frequency pairs): each indexed unless the room has a record for it
  -- already (indexed before: a redelivered entry, or edited or redacted since), which is what
  -- 'index' does for a document's own content. Returns how many were indexed.
  local i, done = 5, 0
  while i <= #ARGV do
    pos = tonumber(ARGV[i])
    local ts, key, len, n = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), math.min(tonumber(ARGV[i + 3]), 255), tonumber(ARGV[i + 4])
    local first, last = i + 5, i + 4 + 2 * n
    loadRecord()
    if not at then
      addDocument(pos, ts, key, len, first, last)
      done = done + 1
    end
    i = last + 1
  end
  return done
end

pos = tonumber(ARGV[5])
loadRecord()
if current ~= ARGV[6] then
  return -1
end
if old and old.flags % 2 == 1 then
  return 0
end
local counted = old ~= nil and math.floor(old.flags / 2) % 2 == 1

local nOld = tonumber(ARGV[7])
local idx = 8
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
addDocument(src, ts, key, len, idx, #ARGV)
return 1
