-- What a search needs to know first about the rooms of one shard (read only), in one call instead
-- of a few commands per room: per room, its statistics, its dead positions and, per query term,
-- the room's words for it (the last term's completions when it is a prefix) with their posting
-- counts; a word's postings themselves when there are few of them (a rare word's are then read
-- here and never again). See src/search/query.ts `viewRooms`.
--
-- A room whose index is not (yet) complete in format 2 is flagged instead (the caller reads its
-- stored events): one in the shard's pending set (being rebuilt by the search reader's migration),
-- or, until the shard's migration is done, one with format 1 keys or no format 2 index at all.
--
-- KEYS[1] the first room's shard search format hash (routes the call: on a Redis Cluster every
-- room of a call is on that shard, so its keys below share the slot; a single Redis takes all the
-- rooms of a search at once).
-- ARGV[1] T, the number of query terms; ARGV[2] 1 when the last term is a prefix; ARGV[3] the most
-- completions of a prefix; ARGV[4] the most postings of a word returned inline; ARGV[5..4+T] the
-- terms; then per room 8 names: its stats hash, dead set, terms sorted set, postings key prefix,
-- format 1 stats hash, its id, its shard's search format hash and pending set.
-- Returns per room { documents, total length, newest position (-1: none), { dead positions },
-- per term { { words }, { counts }, { postings or 0 } } (words without postings left out),
-- 1 when the index is not complete (then nothing else) else 0 }.
local T = tonumber(ARGV[1])
local lastIsPrefix = ARGV[2] == '1'
local expansions = tonumber(ARGV[3])
local inlineMax = tonumber(ARGV[4])
local terms = {}
for i = 1, T do
  terms[i] = ARGV[4 + i]
end
local function view(stats, dead, vocab, pprefix)
  local perTerm = {}
  for i = 1, T do
    local words
    if i == T and lastIsPrefix then
      -- Every completion's first byte follows the prefix's bytes; U+10FFFF in UTF-8 is above any.
      words = redis.call('ZRANGEBYLEX', vocab, '[' .. terms[i], '[' .. terms[i] .. '\244\143\191\191', 'LIMIT', 0, expansions)
    else
      words = { terms[i] }
    end
    local kept, counts, postings = {}, {}, {}
    for _, w in ipairs(words) do
      local key = pprefix .. w
      local n = redis.call('STRLEN', key) / 6
      if n > 0 then
        kept[#kept + 1] = w
        counts[#counts + 1] = n
        postings[#postings + 1] = n <= inlineMax and redis.call('GET', key) or 0
      end
    end
    perTerm[i] = { kept, counts, postings }
  end
  local n, l, p = unpack(redis.call('HMGET', stats, 'n', 'l', 'p'))
  return { tonumber(n or 0), tonumber(l or 0), p and tonumber(p) or -1, redis.call('SMEMBERS', dead), perTerm, 0 }
end

local migrated = {}
local out = {}
for r = 5 + T, #ARGV, 8 do
  local stats, dead, vocab, pprefix, legacy, roomId, format, pending = unpack(ARGV, r, r + 7)
  if migrated[format] == nil then
    migrated[format] = redis.call('HGET', format, 'format') == '2'
  end
  local incomplete = redis.call('SISMEMBER', pending, roomId) == 1
    or (not migrated[format] and (redis.call('EXISTS', legacy) == 1 or redis.call('EXISTS', stats) == 0))
  out[#out + 1] = incomplete and { 0, 0, -1, {}, {}, 1 } or view(stats, dead, vocab, pprefix)
end
return out
