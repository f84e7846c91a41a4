-- report.lua: shared by bench/wrk/chat.lua and bench/wrk/ping.lua (loaded with require).
--
-- Counts every response that is not 200 per thread (wrk's own summary.errors.status only
-- counts status > 399), optionally paces each connection with wrk's delay() hook, and prints
-- one machine-readable line that bench/rule_path.sh parses:
--
--   BENCH rps=.. requests=.. p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=.. non200=..
--         socket_errors=.. timeouts=.. codes=403:12,429:3
--
-- Pacing (env DELAY_MS, a mean in milliseconds, fractional allowed): wrk's delay() returns
-- whole milliseconds, so a fractional mean is drawn as floor(m) or floor(m)+1 with the right
-- probability. wrk measures latency from the moment a request is written, after the delay.

local M = {}

local threads = {}
local next_id = 0

function setup(thread)
    next_id = next_id + 1
    thread:set("id", next_id)
    threads[#threads + 1] = thread
end

non200 = 0
codes = {}

-- wrk only builds the headers table / body string for us when response() exists; the cost
-- is on wrk's core, not the server's (see bench/README.md on checking that wrk is not the
-- bottleneck).
function response(status, headers, body)
    if status ~= 200 then
        non200 = non200 + 1
        codes[status] = (codes[status] or 0) + 1
    end
end

local delay_ms = tonumber(os.getenv("DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
    local whole = math.floor(delay_ms)
    local frac = delay_ms - whole
    local random = math.random
    math.randomseed(os.time() + math.floor(os.clock() * 1e6))
    function delay()
        if random() < frac then
            return whole + 1
        end
        return whole
    end
end

function done(summary, latency, requests)
    local bad, merged = 0, {}
    for _, t in ipairs(threads) do
        bad = bad + (t:get("non200") or 0)
        local c = t:get("codes") or {}
        for status, n in pairs(c) do
            merged[status] = (merged[status] or 0) + n
        end
    end
    local list = {}
    for status, n in pairs(merged) do
        list[#list + 1] = string.format("%d:%d", status, n)
    end
    table.sort(list)
    local e = summary.errors
    local secs = summary.duration / 1e6
    local function p(q) return latency:percentile(q) end
    io.write(string.format("latency percentiles (us): p50 %d  p90 %d  p99 %d  p99.9 %d  max %d\n",
        p(50), p(90), p(99), p(99.9), latency.max))
    io.write(string.format("non-200 responses: %d %s\n", bad, #list > 0 and ("(" .. table.concat(list, ",") .. ")") or ""))
    io.write(string.format(
        "BENCH rps=%.1f requests=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d non200=%d socket_errors=%d timeouts=%d codes=%s\n",
        summary.requests / secs, summary.requests, p(50), p(90), p(99), p(99.9), latency.max, bad,
        e.connect + e.read + e.write, e.timeout, #list > 0 and table.concat(list, ",") or "-"))
end

return M
