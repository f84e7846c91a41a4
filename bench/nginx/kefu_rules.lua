-- kefu_rules.lua: the chat handler of the nginx + Lua reference tier (bench/nginx/nginx.conf.in).
--
-- It does, per POST /v1/chat, the rule-path work kefu-edge does after its edge filter and
-- limits (which nginx does itself with map/geo/limit_req before this runs):
--   read the in-memory body -> check UTF-8 -> cjson decode -> validate user_id/text
--   -> fold the text (full-width ASCII -> ASCII, U+3000 -> space, ASCII lower case)
--   -> keyword rules (string.find plain=true), regex patterns (ngx.re, PCRE JIT), exclusions,
--      longest hit wins, ties by priority then file order (conf/intents.yaml header)
--   -> a reply template of the winning intent (round robin), or the fallback reply
--   -> {"reply","intent","confidence","source","trace_id"} with a Content-Length.
--
-- Written the way the OpenResty tier it replaces would be: all tables (keywords sorted by
-- length, fold map, JSON fragments of every reply) are built once in init_by_lua from the
-- module bench/gen_lua_rules.py generates, so a request does no file IO, no JSON encoding of
-- constant text and no table allocation beyond cjson's decode.
--
-- nginx.conf.in calls init("kefu_rules_data") in init_by_lua and init_worker() in
-- init_worker_by_lua; chat() is the content handler of the chat location.

local _M = {}

local ngx = ngx
local cjson = require "cjson"
local cjson_safe = require "cjson.safe"

local decode = cjson_safe.decode
local NULL = cjson.null
local find, lower, gsub, sub = string.find, string.lower, string.gsub, string.sub
local type = type
local re_find = ngx.re.find
local read_body = ngx.req.read_body
local get_body_data = ngx.req.get_body_data
local get_method = ngx.req.get_method
local ngx_print = ngx.print
local header = ngx.header
local tohex = require("bit").tohex

-- Built by init().
local KW, KW_LEN, KW_INTENT, NKW          -- flat keyword list, longest first
local PRIO, EXCL                          -- per intent index
local PAT, PAT_INTENT, NPAT               -- regex patterns with their intent index
local REPLY_HEAD, REPLY_N, RR             -- per intent: JSON up to `"trace_id":"`, count, cursor
local FALLBACK_HEAD
local MAX_TEXT_CHARS, MAX_USER_ID_BYTES
local FOLD = {}                           -- 3-byte UTF-8 full-width char -> ASCII

local TAIL = '"}'

-- trace_id: 16 hex digits like kefu-edge's (src/api/mod.rs): a random 32-bit prefix per
-- worker and a 32-bit request counter. Not $request_id: nginx fills that from OpenSSL 3.0's
-- RAND_bytes, which cost about 15 us per request on the bench box, more than all the rule
-- work together; a reference tier that paid it would flatter kefu-edge.
local TRACE_PREFIX, SEQ = nil, 0

local function new_trace_prefix()
    TRACE_PREFIX = tohex(math.random(0, 0x7fffffff) * 2 + math.random(0, 1), 8)
end

local function err_body(code, message)
    return '{"error":{"code":' .. cjson.encode(code) .. ',"message":' .. cjson.encode(message) .. '}}'
end

-- Codes as kefu-edge's (src/api/request.rs, src/proxy/chat.rs); messages shortened.
local ERR_METHOD = err_body("method_not_allowed", "use POST")
local ERR_EMPTY = err_body("malformed_json", "empty request body")
local ERR_UTF8 = err_body("invalid_utf8", "body is not valid UTF-8")
local ERR_JSON = err_body("malformed_json", "body is not a JSON object")
local ERR_USER = err_body("invalid_field", "field `user_id` is missing or empty")
local ERR_USER_LONG = err_body("invalid_field", "field `user_id` is too long")
local ERR_TEXT = err_body("invalid_field", "field `text` is missing or empty")
local ERR_TEXT_LONG = err_body("invalid_field", "field `text` is too long")
local ERR_AUX = err_body("invalid_field", "field `session_id` or `channel` is invalid")
local ERR_TOO_LARGE = err_body("body_too_large", "request body too large")
local MAX_AUX_BYTES = 128

local function chars(s)
    -- UTF-8 characters = bytes that are not continuation bytes (0x80..0xBF).
    local _, n = gsub(s, "[^\128-\191]", "")
    return n
end

function _M.init(data_module)
    local data = require(data_module)
    local intents = data.intents
    PRIO, EXCL, REPLY_HEAD, REPLY_N, RR = {}, {}, {}, {}, {}
    PAT, PAT_INTENT, NPAT = {}, {}, 0
    for i, it in ipairs(intents) do
        PRIO[i] = it.priority or 0
        EXCL[i] = it.exclude or {}
        local heads = {}
        for r, reply in ipairs(it.replies or {}) do
            heads[r] = '{"reply":' .. cjson.encode(reply) .. ',"intent":' .. cjson.encode(it.id)
                .. ',"confidence":1.0,"source":"rule","trace_id":"'
        end
        REPLY_HEAD[i], REPLY_N[i], RR[i] = heads, #heads, 0
        for _, p in ipairs(it.patterns or {}) do
            -- Compile now so that a bad pattern stops nginx at start-up, not on a request.
            local _, _, err = re_find("", p, "Ujo")
            if err then
                error("kefu_rules: intent " .. it.id .. ": bad pattern " .. p .. ": " .. err)
            end
            NPAT = NPAT + 1
            PAT[NPAT], PAT_INTENT[NPAT] = p, i
        end
    end
    KW, KW_LEN, KW_INTENT, NKW = {}, {}, {}, #data.keywords
    for k, e in ipairs(data.keywords) do
        KW[k], KW_LEN[k], KW_INTENT[k] = e[1], e[2], e[3]
        if k > 1 and KW_LEN[k] > KW_LEN[k - 1] then
            error("kefu_rules: keywords must be sorted longest first")
        end
    end
    FALLBACK_HEAD = '{"reply":' .. cjson.encode(data.fallback_reply)
        .. ',"intent":"other","confidence":0.0,"source":"fallback","trace_id":"'
    MAX_TEXT_CHARS = data.max_text_chars or 500
    MAX_USER_ID_BYTES = data.max_user_id_bytes or 128
    -- U+FF01..U+FF5E <-> EF BC 81 .. EF BD 9E; fold to U+0021..U+007E, lower-cased.
    for cp = 0xFF01, 0xFF5E do
        local b2 = 0x80 + math.floor(cp / 64) % 64
        local b3 = 0x80 + cp % 64
        FOLD[string.char(0xEF, b2, b3)] = string.char(cp - 0xFEE0):lower()
    end
    return _M
end

function _M.init_worker()
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    new_trace_prefix()
end

-- Fold like src/text.rs. Full-width punctuation (，？！：) is in almost every Chinese message,
-- so there is no point in guarding the gsub with a find.
local function normalise(text)
    local t = gsub(text, "\239[\188\189][\128-\191]", FOLD)
    if find(t, "\227\128\128", 1, true) then
        t = gsub(t, "\227\128\128", " ")
    end
    return lower(t)
end

local function excluded(t, i)
    local ex = EXCL[i]
    for j = 1, #ex do
        if find(t, ex[j], 1, true) then
            return true
        end
    end
    return false
end

-- Regex patterns run through PCRE (JIT, UTF-8 mode) on the folded text, leftmost-first like
-- Rust's regex::find; \d and \s are ASCII-only in PCRE where Rust's are Unicode, which only
-- matters for non-ASCII digits and spaces other than U+3000 (folded to a space before).
--
-- Returns the winning intent index or nil. The candidate with the longest hit wins, then the
-- higher priority, then the intent listed first; an intent with an exclusion hit is no
-- candidate at all. Keywords are sorted longest first, so the scan stops as soon as no
-- remaining keyword can beat the best hit; without any hit it searches every keyword.
local function classify(t)
    local best, best_len, best_prio = nil, 0, 0
    for p = 1, NPAT do
        local from, to = re_find(t, PAT[p], "Ujo")
        if from then
            local i = PAT_INTENT[p]
            -- kefu-edge counts a hit's characters and an empty match as 1.
            local len = to >= from and chars(sub(t, from, to)) or 1
            local prio = PRIO[i]
            if (not best or len > best_len
                    or (len == best_len and (prio > best_prio or (prio == best_prio and i < best))))
                    and not excluded(t, i) then
                best, best_len, best_prio = i, len, prio
            end
        end
    end
    for k = 1, NKW do
        local len = KW_LEN[k]
        if len < best_len then
            break
        end
        if find(t, KW[k], 1, true) then
            local i = KW_INTENT[k]
            local prio = PRIO[i]
            if (not best or len > best_len or prio > best_prio or (prio == best_prio and i < best))
                    and not excluded(t, i) then
                best, best_len, best_prio = i, len, prio
            end
        end
    end
    return best
end

local function reply(status, body)
    ngx.status = status
    header["Content-Length"] = #body
    ngx_print(body)
end

function _M.chat()
    if get_method() ~= "POST" then
        header["Allow"] = "POST"
        return reply(405, ERR_METHOD)
    end
    read_body()
    local body = get_body_data()
    if not body then
        -- nil: empty body, or one that did not fit client_body_buffer_size (the generated
        -- include makes that equal to client_max_body_size, which nginx answers with 413).
        if ngx.req.get_body_file() then
            return reply(413, ERR_TOO_LARGE)
        end
        return reply(400, ERR_EMPTY)
    end
    -- PCRE validates the whole subject as UTF-8 in "u" mode (the C loop is cheap); cjson does
    -- not check UTF-8 at all.
    local _, _, err = re_find(body, "^", "ujo")
    if err then
        return reply(400, ERR_UTF8)
    end
    local req = decode(body)
    if type(req) ~= "table" then
        return reply(400, ERR_JSON)
    end
    local user_id, text = req.user_id, req.text
    if type(user_id) ~= "string" or not find(user_id, "%S") then
        return reply(400, ERR_USER)
    end
    if #user_id > MAX_USER_ID_BYTES then
        return reply(400, ERR_USER_LONG)
    end
    if type(text) ~= "string" or not find(text, "%S") then
        return reply(400, ERR_TEXT)
    end
    if #text > MAX_TEXT_CHARS and chars(text) > MAX_TEXT_CHARS then
        return reply(400, ERR_TEXT_LONG)
    end
    local session_id, channel = req.session_id, req.channel
    if session_id == NULL then session_id = nil end  -- JSON null: absent, as for serde's Option
    if channel == NULL then channel = nil end
    if (session_id ~= nil and (type(session_id) ~= "string" or #session_id > MAX_AUX_BYTES))
            or (channel ~= nil and (type(channel) ~= "string" or #channel > MAX_AUX_BYTES)) then
        return reply(400, ERR_AUX)
    end

    local i = classify(normalise(text))
    local head
    if i then
        local n = REPLY_N[i]
        local r = RR[i] % n + 1
        RR[i] = r
        head = REPLY_HEAD[i][r]
    else
        head = FALLBACK_HEAD
    end
    SEQ = SEQ + 1
    if SEQ > 0x7fffffff then
        SEQ = 1
        new_trace_prefix()
    end
    return reply(200, head .. TRACE_PREFIX .. tohex(SEQ, 8) .. TAIL)
end

-- For tests: classify one utterance without a request (resty CLI or init_by_lua).
_M.classify = function(text)
    local i = classify(normalise(text))
    return i
end

return _M
