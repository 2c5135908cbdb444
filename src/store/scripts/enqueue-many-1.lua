-- Append several actor messages to their shards' inboxes and wake the shards, in one call
-- (src/runtime/actor-client.ts on a single Redis): the asks one process makes in the same turn of
-- its event loop, instead of an XADD per message and a PUBLISH per shard. Each entry is exactly
-- the stream entry one XADD would append; the wake-ups are published after every entry is in, so
-- a woken worker always finds them.
-- KEYS: the inbox streams the entries name by index
-- ARGV[1]: ONE msgpack array (decoded here with cmsgpack; one argument instead of ~12 per message):
--   E entries, then per entry: inbox key index, F (field count, even), then F values (field, value, …)
-- ARGV[2..]: wake-up channels to publish '1' on, each once
-- Returns one value per entry: 1 when appended, else the error text of its XADD alone (the other
-- entries are appended all the same).
local A = cmsgpack.unpack(ARGV[1])
local out = {}
local p = 2
for e = 1, tonumber(A[1]) do
  local key = KEYS[tonumber(A[p])]
  local f = tonumber(A[p + 1])
  local r = redis.pcall('XADD', key, '*', unpack(A, p + 2, p + 1 + f))
  if type(r) == 'table' and r.err then out[e] = r.err else out[e] = 1 end
  p = p + 2 + f
end
for i = 2, #ARGV do
  redis.call('PUBLISH', ARGV[i], '1')
end
return out
