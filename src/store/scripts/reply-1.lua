-- Deliver one actor reply to the asking process's reply stream, only while that stream exists.
-- A front creates its reply stream when it starts (one per process lifetime) and keeps a TTL on
-- it while it runs; a front killed with -9 leaves its stream to expire. Without this check, a
-- reply arriving after the stream expired (a command the dead front left in flight) would create
-- a stream nobody reads and nothing expires.
-- KEYS[1] reply stream
-- ARGV[1] approximate max length of the stream
-- ARGV[2] message id (field mid)
-- ARGV[3] reply blob (field b)
-- Returns the entry id, or false when the stream is gone.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'mid', ARGV[2], 'b', ARGV[3])
