-- ping.lua: wrk script for the bare Pingora ceiling (target/release/examples/ping) or any
-- server that answers GET with a small 200; same reporting as chat.lua (report.lua).
--
-- Usage: wrk -t1 -c64 -d10s -s bench/wrk/ping.lua http://127.0.0.1:8092/ping

local here = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
package.path = here .. "?.lua;" .. package.path
require "report"

local req

function init(args)
    -- Here, not at load time: wrk fills in the Host header of wrk.headers after loading.
    req = wrk.format("GET", wrk.path ~= "/" and wrk.path or "/ping",
        { ["User-Agent"] = os.getenv("UA") or "kefu-bench/1.0" })
end

function request()
    return req
end
