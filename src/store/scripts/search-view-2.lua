-- What a search needs to know first about the rooms of one shard (read only), in one call instead
-- of a few commands per room: per room, its statistics, its dead positions and, per query term,
-- the room's words for it (the last term's completions when it is a prefix: the most frequent
-- ones) with their posting counts; a word's postings themselves when there are few of them (a rare
-- word's are then read here and never again). See src/search/query.ts `viewRooms`.
--
-- The term with the fewest postings in the room drives (the caller reads it); the other terms are
-- only looked up at the driver's documents, so a word with many times the driver's postings comes
-- back cut down to the driver's positions (an intersection done here, not in the caller). In a
-- ranked search the driver's long words come with their best postings and block bounds instead of
-- their postings (see `searchData.topPrefix`): a first page is often found from those alone.
--
-- A room whose index is not (yet) complete in format 2 is flagged instead (the caller reads its
-- stored events): one in the shard's pending set (being rebuilt by the search reader's migration),
-- or, until the shard's migration is done, one with format 1 keys or no format 2 index at all.
--
-- KEYS[1] the first room's shard search format hash (routes the call: on a Redis Cluster every
-- room of a call is on that shard, so its keys below share the slot; a single Redis takes all the
-- rooms of a search at once).
-- ARGV[1] T, the number of query terms; ARGV[2] 1 when the last term is a prefix; ARGV[3] the most
-- completions of a prefix; ARGV[4] the most postings of a word returned inline; ARGV[5] 0: counts
-- only, 1: for `recent`, 2: for `rank`; ARGV[6..5+T] the terms; then per room 10 names: its stats
-- hash, dead set, terms sorted set, postings key prefix, best postings key prefix, block bounds key
-- prefix, format 1 stats hash, its id, its shard's search format hash and pending set.
-- Returns per room { documents, total length, newest position (-1: none), { dead positions },
-- per term { { words }, { counts }, { postings (cut down to the driver's positions for a term
-- not driving) or 0 }, { { best postings, block bounds } or 0 } } (words without postings left
-- out), 1 when the index is not complete (then nothing else) else 0, the driving term (1-based) }.
local T = tonumber(ARGV[1])
local lastIsPrefix = ARGV[2] == '1'
local expansions = tonumber(ARGV[3])
local inlineMax = tonumber(ARGV[4])
local mode = tonumber(ARGV[5])
local terms = {}
for i = 1, T do
  terms[i] = ARGV[5 + i]
end
-- Completions of a prefix looked at before the most frequent `expansions` are kept.
local SCAN_COMPLETIONS = 1000
-- A word has best postings past this many postings (search-index-5.lua's TOP_MIN).
local TOP_MIN = 128
-- A word of another term is cut down to the driver's positions when it has this many times more postings.
local CUT_RATIO = 16

local function posAt(s, i)
  return (struct.unpack('>i4', s, i * 6 + 1))
end

-- The entries of postings string `s` at the (sorted, distinct) positions `want` (far fewer than its
-- entries): a binary search each, from where the last one was found.
local function intersect(s, want)
  local n = #s / 6
  local out = {}
  local lo = 0
  for _, p in ipairs(want) do
    local hi = n
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if posAt(s, mid) < p then
        lo = mid + 1
      else
        hi = mid
      end
    end
    if lo >= n then
      break
    end
    if posAt(s, lo) == p then
      out[#out + 1] = string.sub(s, lo * 6 + 1, lo * 6 + 6)
    end
  end
  return table.concat(out)
end

local function view(stats, dead, vocab, pprefix, tprefix, bprefix)
  local perTerm, totals = {}, {}
  for i = 1, T do
    local words
    if i == T and lastIsPrefix then
      -- Every completion's first byte follows the prefix's bytes; U+10FFFF in UTF-8 is above any.
      words = redis.call('ZRANGEBYLEX', vocab, '[' .. terms[i], '[' .. terms[i] .. '\244\143\191\191', 'LIMIT', 0, SCAN_COMPLETIONS)
    else
      words = { terms[i] }
    end
    local found = {}
    for _, w in ipairs(words) do
      local n = redis.call('STRLEN', pprefix .. w) / 6
      if n > 0 then
        found[#found + 1] = { w, n }
      end
    end
    if #found > expansions then
      -- The most frequent completions (then in byte order).
      table.sort(found, function(a, b)
        if a[2] ~= b[2] then
          return a[2] > b[2]
        end
        return a[1] < b[1]
      end)
      for k = #found, expansions + 1, -1 do
        found[k] = nil
      end
      table.sort(found, function(a, b)
        return a[1] < b[1]
      end)
    end
    local kept, counts, total = {}, {}, 0
    for k, f in ipairs(found) do
      kept[k], counts[k] = f[1], f[2]
      total = total + f[2]
    end
    perTerm[i] = { kept, counts, {}, {} }
    totals[i] = total
  end
  local driver, missing = 1, false
  for i = 1, T do
    if totals[i] < totals[driver] then
      driver = i
    end
    if totals[i] == 0 then
      missing = true
    end
  end
  local cache = {}
  local function get(w)
    local s = cache[w]
    if not s then
      s = redis.call('GET', pprefix .. w) or ''
      cache[w] = s
    end
    return s
  end
  -- A word of another term is cut down to the driver's positions here when that is much less work
  -- than sending it whole (a binary search per driver position; Lua is slow per entry).
  local function cut(n)
    return totals[driver] * CUT_RATIO < n
  end
  local anyCut = false
  for i = 1, T do
    if i ~= driver then
      for _, n in ipairs(perTerm[i][2]) do
        anyCut = anyCut or cut(n)
      end
    end
  end
  -- The driver's positions, when it has few postings and other terms are to be looked up there.
  local want = nil
  if mode > 0 and not missing and anyCut and inlineMax > 0 and totals[driver] <= inlineMax then
    local seen = {}
    want = {}
    for _, w in ipairs(perTerm[driver][1]) do
      local s = get(w)
      for k = 0, #s / 6 - 1 do
        local p = posAt(s, k)
        if not seen[p] then
          seen[p] = true
          want[#want + 1] = p
        end
      end
    end
    table.sort(want)
  end
  for i = 1, T do
    local words, counts, postings, tops = unpack(perTerm[i])
    for k, w in ipairs(words) do
      local n = counts[k]
      postings[k], tops[k] = 0, 0
      if mode > 0 and not missing then
        if i ~= driver and want and cut(n) then
          postings[k] = intersect(get(w), want)
        else
          local best = i == driver and mode == 2 and n > TOP_MIN and redis.call('GET', tprefix .. w) or false
          if best then
            tops[k] = { best, redis.call('GET', bprefix .. w) or '' }
          end
          -- A single driving word with best postings comes without its postings (its first page
          -- usually needs none of them); with other terms, few of its best postings hold them all.
          if n <= inlineMax and (not best or T > 1) then
            postings[k] = get(w)
          end
        end
      end
    end
  end
  local n, l, p = unpack(redis.call('HMGET', stats, 'n', 'l', 'p'))
  return { tonumber(n or 0), tonumber(l or 0), p and tonumber(p) or -1, redis.call('SMEMBERS', dead), perTerm, 0, driver }
end

local migrated = {}
local out = {}
for r = 6 + T, #ARGV, 10 do
  local stats, dead, vocab, pprefix, tprefix, bprefix, legacy, roomId, format, pending = unpack(ARGV, r, r + 9)
  if migrated[format] == nil then
    migrated[format] = redis.call('HGET', format, 'format') == '2'
  end
  local incomplete = redis.call('SISMEMBER', pending, roomId) == 1
    or (not migrated[format] and (redis.call('EXISTS', legacy) == 1 or redis.call('EXISTS', stats) == 0))
  out[#out + 1] = incomplete and { 0, 0, -1, {}, {}, 1, 0 } or view(stats, dead, vocab, pprefix, tprefix, bprefix)
end
return out
