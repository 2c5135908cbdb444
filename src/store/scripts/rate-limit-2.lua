-- One request against a rate limit shared by every front (GCRA, the token bucket's equivalent
-- with one number per key): the key holds the "theoretical arrival time" (ms, Redis's clock) at
-- which the bucket would be full again; a request moves it one emission interval later, and is
-- refused when that would put it more than `burst` intervals ahead of now.
-- A refund moves it one interval back (the failed-login limit takes a request before checking a
-- password and gives it back when the password was right, so only failures count and
-- concurrent guesses cannot all slip in before the first failure is counted).
-- KEYS[1] the limit's key for one user or address
-- ARGV[1] emission interval (ms per request, may be fractional)
-- ARGV[2] burst (requests allowed at once)
-- ARGV[3] optional: 'refund' to give one request back (absent: take one)
-- Returns 0 when allowed (and counted), else the ms until a request would be allowed (nothing
-- counted). A refund returns 0.
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if ARGV[3] == 'refund' then
  local back = tat - interval
  if back <= now then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], string.format('%.3f', back), 'PX', math.ceil(back - now) + 1)
  end
  return 0
end
if tat < now then
  tat = now
end
local nextTat = tat + interval
local allowedAt = nextTat - burst * interval
if now < allowedAt then
  return math.ceil(allowedAt - now)
end
redis.call('SET', KEYS[1], string.format('%.3f', nextTat), 'PX', math.ceil(nextTat - now) + 1)
return 0
