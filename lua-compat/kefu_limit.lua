-- kefu_limit: the OpenResty side of kefu-edge's shared token buckets. It runs the same
-- Redis script (gcra.lua) on the same keys as kefu-edge, so while both tiers serve behind
-- one load balancer a user has one quota and an address has one quota, whichever tier
-- answers. Requires lua-resty-redis (Debian: lua-nginx-redis) and lua-cjson.
--
--   init_by_lua_block   { require("kefu_limit").init({script = "/path/to/gcra.lua"}) }
--   access_by_lua_block { require("kefu_limit").access(opts) }
--
-- (or give `script = "/path/to/gcra.lua"` in opts, read once per worker at first use, where
-- the configuration has an init_by_lua_block of its own)
--
-- opts: redis_host (or "unix:/path/to/redis.sock"), redis_port, timeout_ms (default 2), pool_size (default 64),
-- keepalive_ms (default 60000), key_prefix ("kefu:rl:"), hash_tag ("rl"),
-- per_ip = {interval_us = <microseconds per request>, burst = n}, per_user = {...}: the
-- quotas of kefu-edge's limits.yaml (`rate: 2r/s` is interval_us = 500000).
-- The per-user bucket needs the JSON body's `user_id` (POST /v1/chat).
--
-- Over a limit: 429 with Retry-After and kefu-edge's JSON error. Redis down or slower than
-- timeout_ms: the request is let through and the failure logged (at most once a second),
-- so a Redis outage never takes the tier down; put nginx's own limit_req beside this for a
-- local floor, as kefu-edge's local fallback buckets are.

local cjson = require "cjson.safe"
local ok_redis, redis = pcall(require, "resty.redis")
if not ok_redis then
  redis = require "nginx.redis" -- Debian's lua-nginx-redis installs it under this name
end

local _M = {}

local script, sha
local last_warning = 0

local function hex(bin)
  return (bin:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Read the bucket script once, at init_by_lua time.
function _M.init(cfg)
  local f = assert(io.open(cfg.script, "rb"))
  script = f:read("*a")
  f:close()
  sha = hex(ngx.sha1_bin(script))
end

local function warn(msg)
  local now = ngx.now()
  if now - last_warning >= 1 then
    last_warning = now
    ngx.log(ngx.WARN, "kefu_limit: ", msg, "; request let through")
  end
end

local function refuse(kind, retry_ms)
  local secs = math.max(1, math.ceil(retry_ms / 1000))
  ngx.status = 429
  ngx.header["Retry-After"] = tostring(secs)
  ngx.header["Content-Type"] = "application/json"
  ngx.print(cjson.encode({error = {
    code = "rate_limited",
    message = "too many requests (" .. kind .. " limit); retry later",
  }}))
  return ngx.exit(429)
end

-- The body's user_id, when it is a JSON object with a string user_id.
local function user_id()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    return nil
  end
  local v = cjson.decode(body)
  if type(v) == "table" and type(v.user_id) == "string" and v.user_id ~= "" then
    return v.user_id
  end
  return nil
end

function _M.access(opts)
  if not sha then
    _M.init({script = opts.script})
  end
  local base = (opts.key_prefix or "kefu:rl:") .. "{" .. (opts.hash_tag or "rl") .. "}:"
  local keys, args, kinds = {}, {}, {}
  local function add(kind, part, key, q)
    keys[#keys + 1] = base .. part .. ":" .. key
    args[#args + 1] = string.format("%d", q.interval_us)
    args[#args + 1] = tostring(q.burst)
    args[#args + 1] = "1"
    kinds[#kinds + 1] = kind
  end
  if opts.per_ip then
    add("client_ip", "ip", ngx.var.remote_addr, opts.per_ip)
  end
  if opts.per_user then
    local user = user_id()
    if user then
      add("user", "user", user, opts.per_user)
    end
  end
  if #keys == 0 then
    return
  end

  local red = redis:new()
  red:set_timeouts(opts.timeout_ms or 2, opts.timeout_ms or 2, opts.timeout_ms or 2)
  local host = opts.redis_host or "127.0.0.1"
  local ok, err
  if host:sub(1, 5) == "unix:" then
    ok, err = red:connect(host) -- "unix:/run/redis/redis.sock"
  else
    ok, err = red:connect(host, opts.redis_port or 6379)
  end
  if not ok then
    return warn("redis connect: " .. tostring(err))
  end
  -- One request: R = 1, then its bucket count and quotas (gcra.lua's layout).
  local argv = {}
  for i = 1, #keys do argv[#argv + 1] = keys[i] end
  argv[#argv + 1] = "1"
  argv[#argv + 1] = tostring(#keys)
  for i = 1, #args do argv[#argv + 1] = args[i] end
  local res
  res, err = red:evalsha(sha, #keys, unpack(argv))
  if not res and err and err:find("NOSCRIPT", 1, true) then
    res, err = red:eval(script, #keys, unpack(argv))
  end
  if not res then
    red:close()
    return warn("redis: " .. tostring(err))
  end
  red:set_keepalive(opts.keepalive_ms or 60000, opts.pool_size or 64)
  if tonumber(res[1]) == 0 then
    return refuse(kinds[tonumber(res[4])] or "user", tonumber(res[3]) or 1000)
  end
end

return _M
