-- chat.lua: wrk script for POST /v1/chat with realistic shopper messages.
--
--   SAMPLES  file of messages: first tab-separated column of each line; empty lines and
--            lines starting with '#' are skipped (default tests/data/intent_samples.tsv).
--            Every line is used, rule hits and fallback lines alike, in file order.
--   USERS    number of distinct user_ids to cycle through (default 4096): u00001..
--   DELAY_MS mean pause per connection between requests (see report.lua), for paced runs.
--   UA       User-Agent to send (default "kefu-bench/1.0"; an empty UA is denied by the edge).
--
-- Usage: wrk -t1 -c64 -d10s -s bench/wrk/chat.lua http://127.0.0.1:8080/v1/chat

local here = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
package.path = here .. "?.lua;" .. package.path
require "report"

local samples = os.getenv("SAMPLES") or "/work/main/tests/data/intent_samples.tsv"
local users = tonumber(os.getenv("USERS") or "") or 4096
local ua = os.getenv("UA") or "kefu-bench/1.0"

local function json_string(s)
    s = s:gsub('[%c"\\]', function(c)
        if c == '"' then return '\\"' end
        if c == "\\" then return "\\\\" end
        return string.format("\\u%04x", c:byte())
    end)
    return '"' .. s .. '"'
end

local texts = {}
local f, err = io.open(samples, "r")
if not f then
    error("chat.lua: cannot read SAMPLES file: " .. tostring(err))
end
for line in f:lines() do
    line = line:gsub("\r$", "")
    if line ~= "" and line:sub(1, 1) ~= "#" then
        local text = line:match("^([^\t]*)")
        if text ~= "" then
            texts[#texts + 1] = text
        end
    end
end
f:close()
if #texts == 0 then
    error("chat.lua: no messages in " .. samples)
end

-- Pre-format a ring of complete requests, so wrk spends nothing per request but a table
-- lookup: request k carries message k mod #texts and user k mod USERS; the ring is long
-- enough to visit every message and every user. Built in init(): wrk.format() takes the Host
-- header from wrk.headers, which wrk fills in only after the script is loaded.
local ring, n, i = {}, math.max(#texts, users), 0

function init(args)
    local path = wrk.path ~= "/" and wrk.path or "/v1/chat"
    local headers = { ["Content-Type"] = "application/json", ["User-Agent"] = ua }
    for k = 0, n - 1 do
        local body = '{"user_id":"u' .. string.format("%05d", k % users) .. '","text":'
            .. json_string(texts[k % #texts + 1]) .. '}'
        ring[k + 1] = wrk.format("POST", path, headers, body)
    end
    -- Threads start at different points of the ring (with -t1 there is one thread).
    local id = tonumber(wrk.thread:get("id")) or 1
    i = math.floor((id - 1) * n / 7) % n
end

function request()
    i = i % n + 1
    return ring[i]
end
