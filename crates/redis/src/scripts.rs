//! The Lua scripts. Every mutation is one script, so the entry, its index members and the
//! counters change together, atomically, whichever process or host runs it.
//!
//! Every script takes the key prefix as `ARGV[1]` and builds its key names from it (see the
//! layout in the crate documentation); `KEYS[1]` is the prefix's `meta` key, declared so that a
//! Redis Cluster client routes the call to the node serving the prefix's hash slot (every key
//! of one cache is in that slot). Numbers that must stay exact (timestamps, sizes, write
//! sequence numbers) travel as decimal strings and are stored as the caller sent them; the
//! index members that need a numeric order embed them zero-padded to 20 digits (the width of
//! `u64::MAX`), so a byte-wise member order is the numeric order.

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
-- Members one index read returns at most (scripts that walk an index page through it).
local PAGE = 1000
local function vkey(k) return P .. 'v:' .. k end
local function pad(s) return string.rep('0', 20 - #s) .. s end
local function int(n) return string.format('%d', n) end
-- Metadata is one string per key in the META hash: stored_at,expires_at,accessed_at,
-- access_count,size,seq (expires_at empty for "never").
-- try_parse: nil when absent, false when malformed, the fields otherwise.
local function try_parse(raw)
  if not raw then return nil end
  local sa, ea, aa, ac, sz, sq = string.match(raw, '^(%d+),(%d*),(%d+),(%d+),(%d+),(%d+)$')
  if not sa then return false end
  return {sa = sa, ea = ea, aa = aa, ac = ac, sz = sz, sq = sq}
end
local function parse(raw)
  local m = try_parse(raw)
  if m == false then error('plexcache: malformed entry metadata under prefix ' .. P) end
  return m
end
local function pack(m)
  return m.sa .. ',' .. m.ea .. ',' .. m.aa .. ',' .. m.ac .. ',' .. m.sz .. ',' .. m.sq
end
local function expired(m, now)
  return m.ea ~= '' and tonumber(m.ea) <= now
end
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
-- Removes every member of sorted set z matching the glob pattern (a full scan).
local function zrem_matching(z, pattern)
  local cursor = '0'
  repeat
    local r = redis.call('ZSCAN', z, cursor, 'MATCH', pattern, 'COUNT', PAGE)
    cursor = r[1]
    local items = r[2]
    for i = 1, #items, 2 do redis.call('ZREM', z, items[i]) end
  until cursor == '0'
end
-- The size a key with malformed metadata is accounted with: its key and its value, as written
-- (its size field cannot be trusted).
local function malformed_size(k)
  return #k + redis.call('STRLEN', vkey(k))
end
-- Removes an entry whose metadata is malformed (written by something else than these
-- scripts): its members of every index (found by scanning, since their numbers are unknown),
-- its value and metadata, and its malformed_size from the counters. Returns that size.
-- Rare by nature; a row like this must not block the walks that meet it.
local function drop_malformed(k)
  local any20 = string.rep('?', 20)
  local lit = string.gsub(k, '[%*%?%[%]\\]', '\\%0')
  zrem_matching(LRS, any20 .. lit)
  zrem_matching(LRU, any20 .. lit)
  zrem_matching(EXP, any20 .. lit)
  zrem_matching(LFU, any20 .. any20 .. lit)
  local size = malformed_size(k)
  redis.call('ZREM', KEYS_IDX, k)
  redis.call('HDEL', META, k)
  redis.call('DEL', vkey(k))
  redis.call('HINCRBY', CNT, 'entries', -1)
  redis.call('HINCRBY', CNT, 'bytes', -size)
  return size
end
-- Removes the entry k whose try_parse result is m (fields, or false when malformed). Returns
-- the size it held.
local function remove_entry(k, m)
  if m then
    delete(k, m)
    return tonumber(m.sz)
  end
  return drop_malformed(k)
end
local function counter(name)
  return tonumber(redis.call('HGET', CNT, name) or '0')
end
-- A variadic command (ZADD, ZREM, HSET, HDEL, DEL, MSET) sent once per CHUNK arguments
-- instead of once per member. A chunk is unpacked onto the Lua stack, so it stays far below
-- the stack's limit whatever the number of members.
local CHUNK = 512
local function bulk(cmd, key)
  local self = {args = {}, n = 0}
  function self.flush()
    if self.n > 0 then
      if key then redis.call(cmd, key, unpack(self.args)) else redis.call(cmd, unpack(self.args)) end
      self.args, self.n = {}, 0
    end
  end
  function self.add(a, b)
    local n = self.n + 1
    self.args[n] = a
    if b ~= nil then
      n = n + 1
      self.args[n] = b
    end
    self.n = n
    if n >= CHUNK then self.flush() end
  end
  return self
end
-- Removes the entries of a list of {key, try_parse result} (each key once): the well-formed
-- with variadic commands, the malformed one by one. Returns nothing; the counters follow.
local function remove_many(items)
  local lrs, lru, lfu, exp = bulk('ZREM', LRS), bulk('ZREM', LRU), bulk('ZREM', LFU), bulk('ZREM', EXP)
  local keys, meta, values = bulk('ZREM', KEYS_IDX), bulk('HDEL', META), bulk('DEL', nil)
  local n, freed = 0, 0
  for _, e in ipairs(items) do
    local k, m = e[1], e[2]
    if m then
      local mem = member(k, m)
      lrs.add(mem)
      lru.add(mem)
      lfu.add(lfu_member(k, m))
      if m.ea ~= '' then exp.add(mem) end
      keys.add(k)
      meta.add(k)
      values.add(vkey(k))
      n = n + 1
      freed = freed + tonumber(m.sz)
    else
      drop_malformed(k)
    end
  end
  for _, b in ipairs({lrs, lru, lfu, exp, keys, meta, values}) do b.flush() end
  if n > 0 then
    redis.call('HINCRBY', CNT, 'entries', -n)
    redis.call('HINCRBY', CNT, 'bytes', -freed)
  end
end
-- Removes up to limit entries expired at now, soonest expiry first, ties in write order
-- (the member order of EXP). Stale index members are dropped on the way; an entry with
-- malformed metadata found there is removed and counted. Returns entries, bytes and whether
-- no expired entry is left.
local function purge_expired(now, limit)
  local n, freed = 0, 0
  while n < limit do
    local ms = redis.call('ZRANGEBYSCORE', EXP, '-inf', now, 'LIMIT', 0, math.min(limit - n, PAGE))
    if #ms == 0 then return n, freed, true end
    for _, mem in ipairs(ms) do
      local k = string.sub(mem, 21)
      local m = try_parse(redis.call('HGET', META, k))
      if m == false or (m and member(k, m) == mem) then
        freed = freed + remove_entry(k, m)
        n = n + 1
      else
        redis.call('ZREM', EXP, mem)
      end
    end
  end
  return n, freed, false
end
-- Evicts in the order of index 'lrs', 'lru' or 'lfu' until the bytes counter is at most
-- target, never a key for which protected(k) is true, at most cap entries. Stale index
-- members are dropped on the way; an entry with malformed metadata is evicted like any other
-- (its malformed_size counted). Returns entries, bytes and whether it is done (at the target
-- or nothing left to evict).
local function evict_down(policy, target, protected, cap)
  local idx = P .. 'z:' .. policy
  local skip = 21
  if policy == 'lfu' then skip = 41 end
  local n, freed = 0, 0
  -- Protected members seen so far: they stay, at the head of what is left of the index.
  local kept = 0
  while true do
    if counter('bytes') <= target then return n, freed, true end
    if n >= cap then return n, freed, false end
    local ms = redis.call('ZRANGE', idx, kept, kept + PAGE - 1)
    if #ms == 0 then return n, freed, true end
    for _, mem in ipairs(ms) do
      local k = string.sub(mem, skip)
      if protected(k) then
        kept = kept + 1
      else
        if n >= cap or counter('bytes') <= target then break end
        local m = try_parse(redis.call('HGET', META, k))
        local want = nil
        if m then
          if policy == 'lfu' then want = lfu_member(k, m) else want = member(k, m) end
        end
        if m == false or want == mem then
          freed = freed + remove_entry(k, m)
          n = n + 1
        else
          redis.call('ZREM', idx, mem)
        end
      end
    end
  end
end
-- The lexicographic range of the keys starting with p (keys are UTF-8, which never holds the
-- byte 0xFF).
local function lex(p)
  if p == '' then return '-', '+' end
  return '[' .. p, '(' .. p .. '\255'
end
-- Staged values: a large value reaches a script under a key of its own, set just before the
-- script in the same pipeline (with a short server-side expiry in case the script never
-- runs), and is renamed into place (no copy through Lua). staged_len checks that it is there.
local function staged_len(sk)
  if redis.call('EXISTS', sk) == 0 then
    error('plexcache: a staged value is missing under prefix ' .. P .. ' (expired before its write ran)')
  end
  return redis.call('STRLEN', sk)
end
-- Writes a value of len bytes (inline in val, or staged under the key val when staged) and its
-- metadata at seq (the caller removed any previous entry of k and fixes the counters).
local function write(k, val, len, staged, sa, ea, seq, grace)
  local vk = vkey(k)
  if staged then
    redis.call('RENAME', val, vk)
    redis.call('PERSIST', vk)
  else
    redis.call('SET', vk, val)
  end
  if ea ~= '' then
    -- Server-side expiry is a safety net for values nobody purges, a grace period after the
    -- entry expired; the metadata stays until purged, so the counters stay exact.
    local at = tonumber(ea) + grace
    if at > server_ms() then redis.call('PEXPIREAT', vk, int(at)) end
  end
  local m = {sa = sa, ea = ea, aa = sa, ac = '0', sz = int(#k + len), sq = seq}
  redis.call('HSET', META, k, pack(m))
  index(k, m)
end
"#;

/// ARGV: prefix, key, value (or the staged value's key), stored_at, expires_at ('' = never),
/// max_bytes, policy ('' = none, refuse above max_bytes; 'lrs', 'lru', 'lfu': evict down to
/// it), purge limit, now, grace_ms, staged ('1': ARGV[3] names a staged value, '' otherwise).
/// Purges, writes and evicts (see `WriteLimit`); a refused write drops its staged value.
/// Returns `{stored (0/1), previous size (-1 = none), entries, bytes, expired entries, expired
/// bytes, evicted entries, evicted bytes}`.
const PUT: &str = r#"
local k, val, sa, ea = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local maxb, policy = tonumber(ARGV[6]), ARGV[7]
local staged = ARGV[11] == '1'
local len
if staged then len = staged_len(val) else len = #val end
local xn, xb = purge_expired(ARGV[9], tonumber(ARGV[8]))
local old = try_parse(redis.call('HGET', META, k))
local size = #k + len
local oldsize = -1
if old then oldsize = tonumber(old.sz) elseif old == false then oldsize = malformed_size(k) end
-- The counters after the purge; kept here and written back once.
local c = redis.call('HMGET', CNT, 'entries', 'bytes', 'seq')
local entries, bytes = tonumber(c[1] or '0'), tonumber(c[2] or '0')
if policy == '' and bytes - math.max(oldsize, 0) + size > maxb then
  if staged then redis.call('DEL', val) end
  return {0, -1, entries, bytes, xn, xb, 0, 0}
end
if old then
  -- The value and metadata are overwritten below; only the index members move.
  unindex(k, old)
  entries, bytes = entries - 1, bytes - oldsize
elseif old == false then
  drop_malformed(k)
  entries, bytes = entries - 1, bytes - oldsize
end
local seq = int(tonumber(c[3] or '0') + 1)
write(k, val, len, staged, sa, ea, seq, tonumber(ARGV[10]))
entries, bytes = entries + 1, bytes + size
redis.call('HSET', CNT, 'entries', int(entries), 'bytes', int(bytes), 'seq', seq)
local en, eb = 0, 0
if policy ~= '' then
  en, eb = evict_down(policy, maxb, function(key) return key == k end, math.huge)
  entries, bytes = entries - en, bytes - eb
end
return {1, oldsize, entries, bytes, xn, xb, en, eb}
"#;

/// ARGV: prefix, stored_at, max_bytes, policy (as for PUT), purge limit, now, grace_ms, number
/// of prefixes, the prefixes, then (key, value, expires_at, staged) quadruples, where staged is
/// '1' when the value field names a staged value (see `staged_len`), '' otherwise. Applies the
/// batch as one: purge, prefix removals, writes (the last put of a key wins), eviction of
/// other entries; plans first and changes nothing when the batch cannot fit (but drops its
/// staged values). Returns `{applied (0/1),
/// entries, bytes, removed entries, removed bytes, keys written, expired entries, expired
/// bytes, evicted entries, evicted bytes}`. ARGV is walked by index, never unpacked (a batch
/// may hold more entries than the Lua stack takes).
const WRITE_BATCH: &str = r#"
local sa, maxb, policy = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local purge_limit, now, grace = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local nprefixes = tonumber(ARGV[8])
local first = 9 + nprefixes
local nputs = math.floor((#ARGV - first + 1) / 4)
local function arg(j, field) return ARGV[first + 4 * j + field] end
-- Drops the staged values of the puts for which keep(j) is false.
local function drop_staged(keep)
  for j = 0, nputs - 1 do
    if arg(j, 3) == '1' and not keep(j) then redis.call('DEL', arg(j, 1)) end
  end
end
-- Plan: nothing changes until the batch is known to fit.
local function size_of(k, m)
  if m then return tonumber(m.sz) end
  return malformed_size(k)
end
local gone = {}
-- The purge: the first purge_limit entries of EXP that are really expired.
local purged, xn, xb = {}, 0, 0
local off = 0
while xn < purge_limit do
  local ms = redis.call('ZRANGEBYSCORE', EXP, '-inf', now, 'LIMIT', off, PAGE)
  if #ms == 0 then break end
  off = off + #ms
  for _, mem in ipairs(ms) do
    if xn >= purge_limit then break end
    local k = string.sub(mem, 21)
    if not gone[k] then
      local m = try_parse(redis.call('HGET', META, k))
      if m == false or (m and member(k, m) == mem) then
        gone[k] = true
        xn = xn + 1
        xb = xb + size_of(k, m)
        purged[#purged + 1] = {k, m}
      end
    end
  end
end
-- The prefix removals (of what the purge leaves).
local removed, rn, rb = {}, 0, 0
for i = 9, first - 1 do
  local lo, hi = lex(ARGV[i])
  local from = 0
  while true do
    local ks = redis.call('ZRANGEBYLEX', KEYS_IDX, lo, hi, 'LIMIT', from, PAGE)
    from = from + #ks
    for _, k in ipairs(ks) do
      if not gone[k] then
        local m = try_parse(redis.call('HGET', META, k))
        if m ~= nil then
          gone[k] = true
          rn = rn + 1
          rb = rb + size_of(k, m)
          removed[#removed + 1] = {k, m}
        end
      end
    end
    if #ks < PAGE then break end
  end
end
-- The writes: the last put of each key, and what they replace.
local last = {}
for j = 0, nputs - 1 do last[arg(j, 0)] = j end
local written, wb, replaced = 0, 0, 0
local olds, lens = {}, {}
for j = 0, nputs - 1 do
  local k = arg(j, 0)
  if last[k] == j then
    written = written + 1
    local len
    if arg(j, 3) == '1' then len = staged_len(arg(j, 1)) else len = #arg(j, 1) end
    lens[j] = len
    wb = wb + #k + len
    if not gone[k] then
      local m = try_parse(redis.call('HGET', META, k))
      if m ~= nil then
        replaced = replaced + size_of(k, m)
        olds[#olds + 1] = {k, m}
      end
    end
  end
end
local after = counter('bytes') - xb - rb - replaced + wb
-- Evicting every other entry leaves the batch's own bytes.
if wb > maxb or (policy == '' and after > maxb) then
  drop_staged(function(j) return false end)
  return {0, counter('entries'), counter('bytes'), 0, 0, 0, 0, 0, 0, 0}
end
-- Apply: every removal (purged, removed, replaced) before every write, since a key may be
-- removed and written again.
remove_many(purged)
remove_many(removed)
remove_many(olds)
drop_staged(function(j) return last[arg(j, 0)] == j end)
-- The written keys take the next `written` sequence numbers, in the order of their last put.
local seq = redis.call('HINCRBY', CNT, 'seq', written) - written
local lrs, lru, lfu, exp = bulk('ZADD', LRS), bulk('ZADD', LRU), bulk('ZADD', LFU), bulk('ZADD', EXP)
local keys, meta, values = bulk('ZADD', KEYS_IDX), bulk('HSET', META), bulk('MSET', nil)
local expiring = {}
for j = 0, nputs - 1 do
  local k = arg(j, 0)
  if last[k] == j then
    local val, ea = arg(j, 1), arg(j, 2)
    seq = seq + 1
    local m = {sa = sa, ea = ea, aa = sa, ac = '0', sz = int(#k + lens[j]), sq = int(seq)}
    local mem = member(k, m)
    if arg(j, 3) == '1' then
      redis.call('RENAME', val, vkey(k))
      redis.call('PERSIST', vkey(k))
    else
      values.add(vkey(k), val)
    end
    meta.add(k, pack(m))
    lrs.add(m.sa, mem)
    lru.add(m.aa, mem)
    lfu.add(m.ac, lfu_member(k, m))
    if ea ~= '' then
      exp.add(ea, mem)
      expiring[#expiring + 1] = k
    end
    keys.add(0, k)
  end
end
for _, b in ipairs({values, meta, lrs, lru, lfu, exp, keys}) do b.flush() end
-- The server-side safety-net expiry (see write), once the values are set.
if #expiring > 0 then
  local time_now = server_ms()
  for _, k in ipairs(expiring) do
    local ea = arg(last[k], 2)
    local at = tonumber(ea) + grace
    if at > time_now then redis.call('PEXPIREAT', vkey(k), int(at)) end
  end
end
redis.call('HINCRBY', CNT, 'entries', written)
redis.call('HINCRBY', CNT, 'bytes', wb)
local en, eb = 0, 0
if policy ~= '' then
  en, eb = evict_down(policy, maxb, function(k) return last[k] ~= nil end, math.huge)
end
return {1, counter('entries'), counter('bytes'), rn, rb, written, xn, xb, en, eb}
"#;

/// ARGV: prefix, key. Returns the removed entry's metadata, or nil.
const REMOVE: &str = r#"
local k = ARGV[2]
local raw = redis.call('HGET', META, k)
if not raw then return false end
delete(k, parse(raw))
return raw
"#;

/// ARGV: prefix, lex min, lex max, batch. Removes up to `batch` keys of the range (an entry
/// with malformed metadata too). Returns `{entries removed, bytes removed, index members
/// examined}`.
const REMOVE_RANGE: &str = r#"
local ks = redis.call('ZRANGEBYLEX', KEYS_IDX, ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local n, freed = 0, 0
for _, k in ipairs(ks) do
  local m = try_parse(redis.call('HGET', META, k))
  if m ~= nil then
    freed = freed + remove_entry(k, m)
    n = n + 1
  else
    redis.call('ZREM', KEYS_IDX, k)
  end
end
return {n, freed, #ks}
"#;

/// ARGV: prefix, now, limit. Removes up to `limit` expired entries, soonest expiry first,
/// ties in write order. Returns `{entries, bytes, done (1: no expired entry left)}`.
const PURGE: &str = r#"
local n, freed, done = purge_expired(ARGV[2], tonumber(ARGV[3]))
if done then return {n, freed, 1} end
return {n, freed, 0}
"#;

/// ARGV: prefix, policy (lrs, lru, lfu), target bytes, protect? ('1'/'0'), protected key,
/// at most this many evictions. Returns `{entries, bytes, done (0/1)}`.
const EVICT: &str = r#"
local guarded, protect = ARGV[4] == '1', ARGV[5]
local n, freed, done = evict_down(ARGV[2], tonumber(ARGV[3]),
  function(k) return guarded and k == protect end, tonumber(ARGV[6]))
if done then return {n, freed, 1} end
return {n, freed, 0}
"#;

/// ARGV: prefix, lex min, lex max, now, want, scan. Examines up to `scan` keys of the range
/// and returns `{examined, last examined key, live keys (at most want)...}` (a key with
/// malformed metadata is not live).
const KEYS: &str = r#"
local ks = redis.call('ZRANGEBYLEX', KEYS_IDX, ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[6]))
local now, want = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {0, ''}
local examined = 0
for _, k in ipairs(ks) do
  examined = examined + 1
  out[2] = k
  local m = try_parse(redis.call('HGET', META, k))
  if m and not expired(m, now) then
    out[#out + 1] = k
    if #out - 2 >= want then break end
  end
end
out[1] = examined
return out
"#;

/// ARGV: prefix, then (key, at, count) triples. Keys that are absent or have malformed
/// metadata are skipped.
const RECORD: &str = r#"
local MAXC = 9007199254740992
for i = 2, #ARGV - 2, 3 do
  local k, at, c = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local m = try_parse(redis.call('HGET', META, k))
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
/// sizes, entries with an expiry, |lrs|, |lru|, |lfu|, |exp|, |keys|, values missing,
/// malformed metadata}`, where a value the server dropped by its own expiry (an expired entry
/// not yet purged) is not missing, and an entry with malformed metadata counts with its
/// malformed size (as if it expired). O(n).
const INTEGRITY: &str = r#"
local now_ms = server_ms()
local grace = tonumber(ARGV[2])
local count, sum, with_exp, missing, malformed = 0, 0, 0, 0, 0
local all = redis.call('HGETALL', META)
for i = 1, #all, 2 do
  local m = try_parse(all[i + 1])
  count = count + 1
  if m then
    sum = sum + tonumber(m.sz)
    if m.ea ~= '' then with_exp = with_exp + 1 end
    if (m.ea == '' or tonumber(m.ea) + grace > now_ms)
        and redis.call('EXISTS', vkey(all[i])) == 0 then
      missing = missing + 1
    end
  else
    malformed = malformed + 1
    sum = sum + malformed_size(all[i])
  end
end
return {counter('entries'), counter('bytes'), count, sum, with_exp,
  redis.call('ZCARD', LRS), redis.call('ZCARD', LRU), redis.call('ZCARD', LFU),
  redis.call('ZCARD', EXP), redis.call('ZCARD', KEYS_IDX), missing, malformed}
"#;

/// A script: its code and the SHA-1 the server knows it by.
pub(crate) struct Lua {
    pub code: String,
    pub hash: String,
}

/// The scripts (each is sent by hash, and loaded on a server that lacks it).
pub(crate) struct Scripts {
    pub put: Lua,
    pub write_batch: Lua,
    pub remove: Lua,
    pub remove_range: Lua,
    pub purge: Lua,
    pub evict: Lua,
    pub keys: Lua,
    pub record: Lua,
    pub add_stats: Lua,
    pub integrity: Lua,
}

fn script(body: &str) -> Lua {
    let code = format!("{PRELUDE}{body}");
    let hash = redis::Script::new(&code).get_hash().to_owned();
    Lua { code, hash }
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            put: script(PUT),
            write_batch: script(WRITE_BATCH),
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
