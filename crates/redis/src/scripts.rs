//! The Lua scripts. Every mutation is one script, so the entry, its index members and the
//! counters change together, atomically, whichever process or host runs it.
//!
//! Every script takes the key prefix as `ARGV[1]` and builds its key names from it (see the
//! layout in the crate documentation). Numbers that must stay exact (timestamps, sizes, write
//! sequence numbers) travel as decimal strings and are stored as the caller sent them; the
//! index members that need a numeric order embed them zero-padded to 20 digits (the width of
//! `u64::MAX`), so a byte-wise member order is the numeric order.

use redis::Script;

/// Shared definitions, prepended to every script.
const PRELUDE: &str = r#"
local P = ARGV[1]
local META = P .. 'meta'
local CNT = P .. 'counters'
local STATS = P .. 'stats'
local LRS = P .. 'z:lrs'
local LRU = P .. 'z:lru'
local LFU = P .. 'z:lfu'
local EXP = P .. 'z:exp'
local KEYS_IDX = P .. 'z:keys'
local function vkey(k) return P .. 'v:' .. k end
local function pad(s) return string.rep('0', 20 - #s) .. s end
local function int(n) return string.format('%d', n) end
-- Metadata is one string per key in the META hash: stored_at,expires_at,accessed_at,
-- access_count,size,seq (expires_at empty for "never").
local function parse(raw)
  if not raw then return nil end
  local sa, ea, aa, ac, sz, sq = string.match(raw, '^(%d+),(%d*),(%d+),(%d+),(%d+),(%d+)$')
  if not sa then error('plexcache: malformed entry metadata under prefix ' .. P) end
  return {sa = sa, ea = ea, aa = aa, ac = ac, sz = sz, sq = sq}
end
local function pack(m)
  return m.sa .. ',' .. m.ea .. ',' .. m.aa .. ',' .. m.ac .. ',' .. m.sz .. ',' .. m.sq
end
local function expired(m, now)
  return m.ea ~= '' and tonumber(m.ea) <= now
end
-- Index members: 20-digit seq then key (LRS, LRU, EXP); 20-digit accessed_at, 20-digit seq,
-- then key (LFU, whose score is the access count).
local function member(k, m) return pad(m.sq) .. k end
local function lfu_member(k, m) return pad(m.aa) .. pad(m.sq) .. k end
local function index(k, m)
  local mem = member(k, m)
  redis.call('ZADD', LRS, m.sa, mem)
  redis.call('ZADD', LRU, m.aa, mem)
  redis.call('ZADD', LFU, m.ac, lfu_member(k, m))
  if m.ea ~= '' then redis.call('ZADD', EXP, m.ea, mem) end
  redis.call('ZADD', KEYS_IDX, 0, k)
end
local function unindex(k, m)
  local mem = member(k, m)
  redis.call('ZREM', LRS, mem)
  redis.call('ZREM', LRU, mem)
  redis.call('ZREM', LFU, lfu_member(k, m))
  if m.ea ~= '' then redis.call('ZREM', EXP, mem) end
end
-- Removes an entry whose metadata is m: indexes, value, metadata, counters.
local function delete(k, m)
  unindex(k, m)
  redis.call('ZREM', KEYS_IDX, k)
  redis.call('HDEL', META, k)
  redis.call('DEL', vkey(k))
  redis.call('HINCRBY', CNT, 'entries', -1)
  redis.call('HINCRBY', CNT, 'bytes', -tonumber(m.sz))
end
local function counter(name)
  return tonumber(redis.call('HGET', CNT, name) or '0')
end
"#;

/// ARGV: prefix, key, now. Returns `{meta, value}` or nil.
const GET: &str = r#"
local k = ARGV[2]
local raw = redis.call('HGET', META, k)
if not raw then return false end
if expired(parse(raw), tonumber(ARGV[3])) then return false end
local v = redis.call('GET', vkey(k))
if not v then return false end
return {raw, v}
"#;

/// ARGV: prefix, key, now, head, len. Returns `{meta, 1}` when the value is `len` bytes and
/// starts with `head`, `{meta, 0, value}` otherwise, nil when absent or expired.
const GET_IF_CHANGED: &str = r#"
local k = ARGV[2]
local raw = redis.call('HGET', META, k)
if not raw then return false end
if expired(parse(raw), tonumber(ARGV[3])) then return false end
local vk = vkey(k)
if redis.call('EXISTS', vk) == 0 then return false end
local head = ARGV[4]
if redis.call('STRLEN', vk) == tonumber(ARGV[5]) then
  if #head == 0 or redis.call('GETRANGE', vk, 0, #head - 1) == head then
    return {raw, 1}
  end
end
return {raw, 0, redis.call('GET', vk)}
"#;

/// ARGV: prefix, key, value, stored_at, expires_at ('' = never), max_bytes ('' = none),
/// grace_ms. Returns `{stored (0/1), previous size (-1 = none), entries, bytes}`.
const PUT: &str = r#"
local k, val, sa, ea, maxb = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local old = parse(redis.call('HGET', META, k))
local size = #k + #val
local oldsize = old and tonumber(old.sz) or 0
local entries, bytes = counter('entries'), counter('bytes')
if maxb ~= '' and bytes - oldsize + size > tonumber(maxb) then
  return {0, -1, entries, bytes}
end
local seq = int(redis.call('HINCRBY', CNT, 'seq', 1))
if old then unindex(k, old) end
local vk = vkey(k)
redis.call('SET', vk, val)
if ea ~= '' then
  -- Server-side expiry is a safety net for values nobody purges, a grace period after the
  -- entry expired; the metadata stays until purge_expired, so the counters stay exact.
  local t = redis.call('TIME')
  local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local at = tonumber(ea) + tonumber(ARGV[7])
  if at > server_ms then redis.call('PEXPIREAT', vk, int(at)) end
end
local m = {sa = sa, ea = ea, aa = sa, ac = '0', sz = int(size), sq = seq}
redis.call('HSET', META, k, pack(m))
index(k, m)
if old then
  bytes = redis.call('HINCRBY', CNT, 'bytes', size - oldsize)
else
  entries = redis.call('HINCRBY', CNT, 'entries', 1)
  bytes = redis.call('HINCRBY', CNT, 'bytes', size)
end
return {1, old and oldsize or -1, entries, bytes}
"#;

/// ARGV: prefix, key. Returns the removed entry's metadata, or nil.
const REMOVE: &str = r#"
local k = ARGV[2]
local raw = redis.call('HGET', META, k)
if not raw then return false end
delete(k, parse(raw))
return raw
"#;

/// ARGV: prefix, lex min, lex max, batch. Removes up to `batch` keys of the range. Returns
/// `{entries removed, bytes removed, index members examined}`.
const REMOVE_RANGE: &str = r#"
local ks = redis.call('ZRANGEBYLEX', KEYS_IDX, ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local n, freed = 0, 0
for _, k in ipairs(ks) do
  local m = parse(redis.call('HGET', META, k))
  if m then
    delete(k, m)
    n = n + 1
    freed = freed + tonumber(m.sz)
  else
    redis.call('ZREM', KEYS_IDX, k)
  end
end
return {n, freed, #ks}
"#;

/// ARGV: prefix, now, batch. Removes up to `batch` expired entries, soonest expiry first,
/// ties in write order. Returns `{entries, bytes, index members examined}`.
const PURGE: &str = r#"
local ms = redis.call('ZRANGEBYSCORE', EXP, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local n, freed = 0, 0
for _, mem in ipairs(ms) do
  local k = string.sub(mem, 21)
  local m = parse(redis.call('HGET', META, k))
  if m and member(k, m) == mem then
    delete(k, m)
    n = n + 1
    freed = freed + tonumber(m.sz)
  else
    redis.call('ZREM', EXP, mem)
  end
end
return {n, freed, #ms}
"#;

/// ARGV: prefix, policy (lrs, lru, lfu), target bytes, protect? ('1'/'0'), protected key,
/// at most this many evictions. Returns `{entries, bytes, done (0/1)}`.
const EVICT: &str = r#"
local policy = ARGV[2]
local idx = P .. 'z:' .. policy
local skip = 21
if policy == 'lfu' then skip = 41 end
local target = tonumber(ARGV[3])
local guarded, protect = ARGV[4] == '1', ARGV[5]
local cap = tonumber(ARGV[6])
local n, freed = 0, 0
while n < cap do
  if counter('bytes') <= target then return {n, freed, 1} end
  local victim = nil
  for _, mem in ipairs(redis.call('ZRANGE', idx, 0, 1)) do
    if not (guarded and string.sub(mem, skip) == protect) then
      victim = mem
      break
    end
  end
  if not victim then return {n, freed, 1} end
  local k = string.sub(victim, skip)
  local m = parse(redis.call('HGET', META, k))
  local want = nil
  if m then
    if policy == 'lfu' then want = lfu_member(k, m) else want = member(k, m) end
  end
  if want == victim then
    delete(k, m)
    n = n + 1
    freed = freed + tonumber(m.sz)
  else
    redis.call('ZREM', idx, victim)
  end
end
return {n, freed, 0}
"#;

/// ARGV: prefix, lex min, lex max, now, want, scan. Examines up to `scan` keys of the range
/// and returns `{examined, last examined key, live keys (at most want)...}`.
const KEYS: &str = r#"
local ks = redis.call('ZRANGEBYLEX', KEYS_IDX, ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[6]))
local now, want = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {0, ''}
local examined = 0
for _, k in ipairs(ks) do
  examined = examined + 1
  out[2] = k
  local m = parse(redis.call('HGET', META, k))
  if m and not expired(m, now) then
    out[#out + 1] = k
    if #out - 2 >= want then break end
  end
end
out[1] = examined
return out
"#;

/// ARGV: prefix, then (key, at, count) triples.
const RECORD: &str = r#"
local MAXC = 9007199254740992
for i = 2, #ARGV - 2, 3 do
  local k, at, c = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local m = parse(redis.call('HGET', META, k))
  if m then
    local old_lfu = lfu_member(k, m)
    if tonumber(at) > tonumber(m.aa) then m.aa = at end
    local ac = tonumber(m.ac) + c
    if ac > MAXC then ac = MAXC end
    m.ac = int(ac)
    redis.call('HSET', META, k, pack(m))
    redis.call('ZADD', LRU, m.aa, member(k, m))
    redis.call('ZREM', LFU, old_lfu)
    redis.call('ZADD', LFU, m.ac, lfu_member(k, m))
  end
end
return 1
"#;

/// ARGV: prefix, then (counter, delta) pairs. Adds, saturating at i64::MAX.
const ADD_STATS: &str = r#"
for i = 2, #ARGV - 1, 2 do
  local r = redis.pcall('HINCRBY', STATS, ARGV[i], ARGV[i + 1])
  if type(r) == 'table' and r.err then
    redis.call('HSET', STATS, ARGV[i], '9223372036854775807')
  end
end
return 1
"#;

/// ARGV: prefix, grace_ms. Returns `{entries counter, bytes counter, metadata count, sum of
/// sizes, entries with an expiry, |lrs|, |lru|, |lfu|, |exp|, |keys|, values missing}`, where
/// a value the server dropped by its own expiry (an expired entry not yet purged) is not
/// missing. O(n).
const INTEGRITY: &str = r#"
local t = redis.call('TIME')
local server_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace = tonumber(ARGV[2])
local count, sum, with_exp, missing = 0, 0, 0, 0
local all = redis.call('HGETALL', META)
for i = 1, #all, 2 do
  local m = parse(all[i + 1])
  count = count + 1
  sum = sum + tonumber(m.sz)
  if m.ea ~= '' then with_exp = with_exp + 1 end
  if (m.ea == '' or tonumber(m.ea) + grace > server_ms)
      and redis.call('EXISTS', vkey(all[i])) == 0 then
    missing = missing + 1
  end
end
return {counter('entries'), counter('bytes'), count, sum, with_exp,
  redis.call('ZCARD', LRS), redis.call('ZCARD', LRU), redis.call('ZCARD', LFU),
  redis.call('ZCARD', EXP), redis.call('ZCARD', KEYS_IDX), missing}
"#;

/// The loaded scripts (each is sent by hash, and loaded on a server that lacks it).
pub(crate) struct Scripts {
    pub get: Script,
    pub get_if_changed: Script,
    pub put: Script,
    pub remove: Script,
    pub remove_range: Script,
    pub purge: Script,
    pub evict: Script,
    pub keys: Script,
    pub record: Script,
    pub add_stats: Script,
    pub integrity: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            get: script(GET),
            get_if_changed: script(GET_IF_CHANGED),
            put: script(PUT),
            remove: script(REMOVE),
            remove_range: script(REMOVE_RANGE),
            purge: script(PURGE),
            evict: script(EVICT),
            keys: script(KEYS),
            record: script(RECORD),
            add_stats: script(ADD_STATS),
            integrity: script(INTEGRITY),
        }
    }
}
