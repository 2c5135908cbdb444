-- Extend many leases one worker holds, in one call (its renewal round on a single Redis; on a
-- Cluster each shard's lease lives in its own slot and lease-renew-1.lua is called per shard).
-- Per key exactly what lease-renew-1.lua does.
-- KEYS lease hashes
-- ARGV[1] worker id
-- ARGV[2] ttl (ms)
-- ARGV[2 + i] the fencing token held for KEYS[i]
-- Returns a flat list, two items per key: 1 and the handoff target ('' for none) when renewed,
-- 0 and the current owner ('' for none) when the lease is no longer the caller's.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'owner', 'token', 'target', 'target_expires')
  if f[1] ~= ARGV[1] or f[2] ~= ARGV[2 + i] then
    out[#out + 1] = 0
    out[#out + 1] = f[1] or ''
  else
    redis.call('HSET', key, 'expires', now + ttl)
    local target = ''
    if f[3] and f[3] ~= '' and tonumber(f[4] or '0') > now then
      target = f[3]
    end
    out[#out + 1] = 1
    out[#out + 1] = target
  end
end
return out
