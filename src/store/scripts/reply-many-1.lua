-- Deliver several actor replies to one reply stream in one call (a group commit's answers to one
-- asking process), only while that stream exists: the same rule as reply-1.lua, which says why.
-- KEYS[1] reply stream
-- ARGV[1] approximate max length of the stream
-- ARGV[2..] pairs: message id (field mid), reply blob (field b)
-- Returns how many were delivered (0 when the stream is gone).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
for i = 2, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'mid', ARGV[i], 'b', ARGV[i + 1])
end
return (#ARGV - 1) / 2
