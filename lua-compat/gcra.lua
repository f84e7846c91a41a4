-- GCRA token buckets in Redis, shared by kefu-edge (src/limits/shared.rs loads this file)
-- and the OpenResty module (lua-compat/kefu_limit.lua), so one user's bucket is one bucket
-- whichever tier serves the request. Run with EVALSHA (EVAL on NOSCRIPT).
--
-- One call checks the buckets of one or more requests (kefu-edge sends the requests that
-- arrive together in one call; the OpenResty module sends one):
--
-- ARGV[1]      R, the number of requests
-- then, for each request in turn:
--   n          its number of buckets
--   3 values per bucket: emission interval in microseconds (1 s / rate), burst (the most
--              requests the bucket admits at once, >= 1), cost of this request (usually 1)
-- KEYS         every request's buckets, in the same order (all keys of one call share a
--              hash tag, so the call runs on Redis Cluster)
--
-- Each request is all or nothing: every one of its buckets admits it or none is charged.
-- Requests are decided in order, so two requests of one user in a call see each other.
-- Returns 4 integers per request:
--   allowed (1 or 0), remaining (the fewest requests any of its buckets would still admit),
--   retry_after_ms (0 when allowed; else when every refusing bucket admits it again),
--   refused_by (0 when allowed; else the number, from 1, of its bucket that refuses longest).
-- Each key holds the bucket's theoretical arrival time (microseconds, Redis TIME) and
-- expires once the bucket is full again.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local a = 2 -- next ARGV
local k = 1 -- next KEY
for _ = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local tats = {}
  local remaining = -1
  local wait = 0
  local refused_by = 0
  for i = 1, n do
    local interval = tonumber(ARGV[a + 3 * i - 3])
    local burst = tonumber(ARGV[a + 3 * i - 2])
    local cost = tonumber(ARGV[a + 3 * i - 1])
    local tat = tonumber(redis.call('GET', KEYS[k + i - 1]) or now)
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
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = math.ceil(wait / 1000)
    out[#out + 1] = refused_by
  else
    for i = 1, n do
      -- %d: a microsecond clock does not survive Lua's default number formatting (%.14g)
      redis.call('SET', KEYS[k + i - 1], string.format('%d', tats[i]),
        'PX', math.ceil((tats[i] - now) / 1000) + 1)
    end
    out[#out + 1] = 1
    out[#out + 1] = math.max(remaining, 0)
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
  a = a + 3 * n
  k = k + n
end
return out
