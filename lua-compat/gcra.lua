-- GCRA token buckets in Redis, shared by kefu-edge (src/limits/shared.rs loads this file)
-- and the OpenResty module (lua-compat/kefu_limit.lua), so one user's bucket is one bucket
-- whichever tier serves the request. Run with EVALSHA (EVAL on NOSCRIPT).
--
-- KEYS[i]      bucket i (all keys of one call share a hash tag, so it runs on Redis Cluster)
-- ARGV[3i-2]   emission interval of bucket i in microseconds (1 s / rate)
-- ARGV[3i-1]   burst: the most requests bucket i admits at once (>= 1)
-- ARGV[3i]     cost of this request in bucket i (usually 1)
--
-- Every bucket must admit the request or none is charged. Returns
-- {allowed (1 or 0), remaining (the fewest requests any bucket would still admit now),
--  retry_after_ms (0 when allowed; else when every refusing bucket admits it again),
--  refused_by (0 when allowed; else the number i of the bucket that refuses longest)}.
-- Each key holds the bucket's theoretical arrival time (microseconds, Redis TIME) and
-- expires once the bucket is full again.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local remaining = -1
local wait = 0
local refused_by = 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then
    tat = now
  end
  local new_tat = tat + cost * interval
  local allow_at = new_tat - burst * interval
  if allow_at > now then
    if allow_at - now > wait then
      wait = allow_at - now
      refused_by = i
    end
  else
    tats[i] = new_tat
    local left = math.floor((now - allow_at) / interval)
    if remaining < 0 or left < remaining then
      remaining = left
    end
  end
end
if wait > 0 then
  return {0, 0, math.ceil(wait / 1000), refused_by}
end
for i = 1, #KEYS do
  -- %d: a microsecond clock does not survive Lua's default number formatting (%.14g)
  redis.call('SET', KEYS[i], string.format('%d', tats[i]),
    'PX', math.ceil((tats[i] - now) / 1000) + 1)
end
if remaining < 0 then
  remaining = 0
end
return {1, remaining, 0, 0}
