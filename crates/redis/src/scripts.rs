//! The Lua scripts. Every mutation is one script, so the entry, its index members and the
//! counters change together, atomically, whichever process or host runs it. Each runs as a
//! function of one Redis Functions library (`FCALL`) where the server has them, otherwise as a
//! script sent by hash (`EVALSHA`): the same code either way.
//!
//! Every script takes the key prefix as `ARGV[1]` and builds its key names from it (see the
//! layout in the crate documentation); `KEYS[1]` is the prefix's `meta` key, declared so that a
//! Redis Cluster client routes the call to the node serving the prefix's hash slot (every key
//! of one cache is in that slot). Numbers that must stay exact (timestamps, sizes, write
//! sequence numbers) travel as decimal strings and are stored as the caller sent them; the
//! index members that need a numeric order embed them zero-padded to 20 digits (the width of
//! `u64::MAX`), so a byte-wise member order is the numeric order.

/// Shared definitions, before every script (or, in the function library, before all).
/// The key names depend on the prefix, which every call passes: `set_prefix` sets them at the
/// start of each call (a script or function runs alone on the server, so they are its own
/// for the call).
const PRELUDE: &str = r#"
local P, META, STATS, NEW, LRS, LRU, LFU, EXP, EXPI, KEYS_IDX
local function set_prefix(p)
  P = p
  META = p .. 'meta'
  STATS = p .. 'stats'
  NEW = p .. 'z:new'
  LRS = p .. 'z:lrs'
  LRU = p .. 'z:lru'
  LFU = p .. 'z:lfu'
  EXP = p .. 'z:exp'
  EXPI = p .. 'z:exp-new'
  KEYS_IDX = p .. 'z:keys'
end
-- The cache-wide counters are fields of META whose names start with the byte 0xFF, which no
-- UTF-8 key holds: one HMGET reads them with an entry's metadata, one HSET writes them back.
-- F_MAX_STORED and F_MAX_EXPIRY are the largest stored_at and expires_at of the entries
-- written to NEW and EXPI (see place).
local F_ENTRIES, F_BYTES, F_SEQ, F_NEXT = '\255entries', '\255bytes', '\255seq', '\255next-expiry'
local F_MAX_STORED, F_MAX_EXPIRY = '\255max-stored', '\255max-expiry'
-- Members one index read returns at most (scripts that walk an index page through it).
local PAGE = 1000
-- The longest server-side expiry set (2^46 ms, about 2,200 years); beyond it, none.
local MAX_PX = 70368744177664
local function vkey(k) return P .. 'v:' .. k end
local function pad(s) return string.rep('0', 20 - #s) .. s end
local function int(n) return string.format('%d', n) end
-- Metadata is one string per key in the META hash: stored_at,expires_at,accessed_at,
-- access_count,size,seq (expires_at empty for "never"), then flags after a ',': 'n' when the
-- entry is in NEW, 'i' when its expiry is in EXPI (see index).
-- try_parse: nil when absent, false when malformed, the fields otherwise.
local FLAGS = {[''] = {false, false}, [',n'] = {true, false}, [',i'] = {false, true}, [',ni'] = {true, true}}
local function try_parse(raw)
  if not raw then return nil end
  local sa, ea, aa, ac, sz, sq, fl = string.match(raw, '^(%d+),(%d*),(%d+),(%d+),(%d+),(%d+)(,?[ni]*)$')
  local f = FLAGS[fl]
  if not sa or not f or (ea == '' and f[2]) then return false end
  return {sa = sa, ea = ea, aa = aa, ac = ac, sz = sz, sq = sq, new = f[1], ein = f[2]}
end
local function parse(raw)
  local m = try_parse(raw)
  if m == false then error('plexcache: malformed entry metadata under prefix ' .. P) end
  return m
end
local function pack(m)
  local s = m.sa .. ',' .. m.ea .. ',' .. m.aa .. ',' .. m.ac .. ',' .. m.sz .. ',' .. m.sq
  if m.new then
    if m.ein then return s .. ',ni' end
    return s .. ',n'
  end
  if m.ein then return s .. ',i' end
  return s
end
local function expired(m, now)
  return m.ea ~= '' and tonumber(m.ea) <= now
end
local function server_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The counters (entries, bytes, write sequence, next expiry, the two maxima), then the value
-- of the extra field asked for, in one HMGET.
local function load_counters(k)
  local r
  if k then
    r = redis.call('HMGET', META, F_ENTRIES, F_BYTES, F_SEQ, F_NEXT, F_MAX_STORED, F_MAX_EXPIRY, k)
  else
    r = redis.call('HMGET', META, F_ENTRIES, F_BYTES, F_SEQ, F_NEXT, F_MAX_STORED, F_MAX_EXPIRY)
  end
  local c = {e = tonumber(r[1] or '0'), b = tonumber(r[2] or '0'), s = tonumber(r[3] or '0'),
    x = r[4], ms = r[5], me = r[6]}
  return c, r[7]
end
-- Writes the counters back, with one more field (an entry's metadata) when k is given.
local function save_counters(c, k, v)
  local a = {'HSET', META, F_ENTRIES, int(c.e), F_BYTES, int(c.b), F_SEQ, int(c.s)}
  local n = 8
  if c.x then
    a[n + 1], a[n + 2], n = F_NEXT, c.x, n + 2
  end
  if c.ms then
    a[n + 1], a[n + 2], n = F_MAX_STORED, c.ms, n + 2
  end
  if c.me then
    a[n + 1], a[n + 2], n = F_MAX_EXPIRY, c.me, n + 2
  end
  if k then
    a[n + 1], a[n + 2] = k, v
  end
  redis.call(unpack(a))
end
-- F_NEXT is at most every expiry in EXP and EXPI ('none': both are empty; absent or
-- unreadable: not known), so that a write does not look for expired entries while none can be.
local function nothing_expired(c, now)
  if c.x == 'none' then return true end
  local x = tonumber(c.x)
  return x ~= nil and tonumber(now) < x
end
local function lower_next(c, ea)
  if ea == '' then return end
  local x = tonumber(c.x)
  if c.x == 'none' or (x and tonumber(ea) < x) then c.x = ea end
end
-- Index members: 20-digit seq then key (LRS, LRU, EXP); 20-digit accessed_at, 20-digit seq,
-- then key (LFU, whose score is the access count); the key alone in NEW and EXPI, whose
-- score is the seq.
local function member(k, m) return pad(m.sq) .. k end
local function lfu_member(k, m) return pad(m.aa) .. pad(m.sq) .. k end
local function refresh_next(c)
  local x = nil
  local h = redis.call('ZRANGE', EXP, 0, 0, 'WITHSCORES')
  if h[2] then x = tonumber(h[2]) end
  local hi = redis.call('ZRANGE', EXPI, 0, 0, 'WITHSCORES')
  if hi[1] then
    local m = try_parse(redis.call('HGET', META, hi[1]))
    if not (m and m.ein and tonumber(m.sq) == tonumber(hi[2])) then
      -- A stale head: not known until a purge walks past it.
      c.x = '?'
      return
    end
    local ea = tonumber(m.ea)
    if not x or ea < x then x = ea end
  end
  if x then c.x = int(x) else c.x = 'none' end
end
-- The server-side expiry (milliseconds from now) of a value written at sa that expires at
-- ea: its time to live plus grace, or nil for none (no expiry, no time left, or too far).
local function safety_px(sa, ea, grace)
  if ea == '' then return nil end
  local px = tonumber(ea) - tonumber(sa) + grace
  if px < 1 or px > MAX_PX then return nil end
  return int(px)
end
-- Where a new entry's members go. An entry never read since written has accessed_at =
-- stored_at and no accesses, so its place in all three eviction orders follows from
-- (stored_at, seq). NEW holds such entries scored by seq alone, with the key as member (a
-- rewrite moves its member in place), as long as that order is theirs: a write whose
-- stored_at is below the largest one NEW received (a clock behind another) goes to LRS, LRU
-- and LFU instead, which order by the numbers themselves. EXPI holds expiries in the same way
-- (by seq, while expires_at does not go down), EXP the others (by expires_at, then seq).
local function place(m, c)
  m.new = tonumber(m.sa) >= (tonumber(c.ms) or 0)
  if m.new then c.ms = m.sa end
  m.ein = m.ea ~= '' and tonumber(m.ea) >= (tonumber(c.me) or 0)
  if m.ein then c.me = m.ea end
end
local function index(k, m)
  if m.new then
    redis.call('ZADD', NEW, m.sq, k)
  else
    local mem = member(k, m)
    redis.call('ZADD', LRS, m.sa, mem)
    redis.call('ZADD', LRU, m.aa, mem)
    redis.call('ZADD', LFU, m.ac, lfu_member(k, m))
  end
  if m.ein then
    redis.call('ZADD', EXPI, m.sq, k)
  elseif m.ea ~= '' then
    redis.call('ZADD', EXP, m.ea, member(k, m))
  end
end
-- Removes the eviction and expiry members of an entry whose metadata is m, except those that
-- the members of its next metadata nxt (when given) replace in place.
local function unindex(k, m, nxt)
  if m.new then
    if not (nxt and nxt.new) then redis.call('ZREM', NEW, k) end
  else
    local mem = member(k, m)
    redis.call('ZREM', LRS, mem)
    redis.call('ZREM', LRU, mem)
    redis.call('ZREM', LFU, lfu_member(k, m))
  end
  if m.ein then
    if not (nxt and nxt.ein) then redis.call('ZREM', EXPI, k) end
  elseif m.ea ~= '' then
    redis.call('ZREM', EXP, member(k, m))
  end
end
-- Removes an entry whose metadata is m: indexes, value, metadata; counted in c.
local function delete(k, m, c)
  unindex(k, m)
  redis.call('ZREM', KEYS_IDX, k)
  redis.call('HDEL', META, k)
  redis.call('DEL', vkey(k))
  c.e, c.b = c.e - 1, c.b - tonumber(m.sz)
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
-- its value and metadata; counts its malformed_size in c and returns it.
-- Rare by nature; a row like this must not block the walks that meet it.
local function drop_malformed(k, c)
  local any20 = string.rep('?', 20)
  local lit = string.gsub(k, '[%*%?%[%]\\]', '\\%0')
  redis.call('ZREM', NEW, k)
  redis.call('ZREM', EXPI, k)
  zrem_matching(LRS, any20 .. lit)
  zrem_matching(LRU, any20 .. lit)
  zrem_matching(EXP, any20 .. lit)
  zrem_matching(LFU, any20 .. any20 .. lit)
  local size = malformed_size(k)
  redis.call('ZREM', KEYS_IDX, k)
  redis.call('HDEL', META, k)
  redis.call('DEL', vkey(k))
  c.e, c.b = c.e - 1, c.b - size
  return size
end
-- Removes the entry k whose try_parse result is m (fields, or false when malformed). Returns
-- the size it held.
local function remove_entry(k, m, c)
  if m then
    delete(k, m, c)
    return tonumber(m.sz)
  end
  return drop_malformed(k, c)
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
-- with variadic commands, the malformed one by one; counted in c. Then the stale members
-- listed in stale ({sorted set, member} pairs), if given.
local function remove_many(items, c, stale)
  local new, lrs, lru, lfu = bulk('ZREM', NEW), bulk('ZREM', LRS), bulk('ZREM', LRU), bulk('ZREM', LFU)
  local expi, exp = bulk('ZREM', EXPI), bulk('ZREM', EXP)
  local keys, meta, values = bulk('ZREM', KEYS_IDX), bulk('HDEL', META), bulk('DEL', nil)
  for _, e in ipairs(items) do
    local k, m = e[1], e[2]
    if m then
      if m.new then
        new.add(k)
      else
        local mem = member(k, m)
        lrs.add(mem)
        lru.add(mem)
        lfu.add(lfu_member(k, m))
      end
      if m.ein then expi.add(k) elseif m.ea ~= '' then exp.add(member(k, m)) end
      keys.add(k)
      meta.add(k)
      values.add(vkey(k))
      c.e, c.b = c.e - 1, c.b - tonumber(m.sz)
    else
      drop_malformed(k, c)
    end
  end
  for _, b in ipairs({new, lrs, lru, lfu, expi, exp, keys, meta, values}) do b.flush() end
  for _, s in ipairs(stale or {}) do redis.call('ZREM', s[1], s[2]) end
end
-- A walk over one sorted set in order, a page at a time (small pages first: a write usually
-- needs a few members), changing nothing: by rank, or (due given) the members scored at most
-- due. Members for which skip(member) is true are passed over; make(member, score) turns the
-- others into an entry {k, m, r1, r2, r3} (its rank in the order walked) or nil when the
-- member is stale (its entry is elsewhere or gone); stale members are listed in stale for
-- removal after the walk.
local function walk(z, due, make, stale, skip)
  return {z = z, due = due, make = make, stale = stale, skip = skip, off = 0, buf = {}, i = 1,
    size = 8, ended = false, cur = nil}
end
local function head(w)
  while not w.cur do
    if w.i > #w.buf then
      if w.ended then return nil end
      if w.due then
        w.buf = redis.call('ZRANGEBYSCORE', w.z, '-inf', w.due, 'WITHSCORES', 'LIMIT', w.off, w.size)
      else
        w.buf = redis.call('ZRANGE', w.z, w.off, w.off + w.size - 1, 'WITHSCORES')
      end
      w.off = w.off + #w.buf / 2
      w.i = 1
      if #w.buf < 2 * w.size then w.ended = true end
      w.size = math.min(w.size * 4, PAGE)
      if #w.buf == 0 then return nil end
    end
    local mem, score = w.buf[w.i], w.buf[w.i + 1]
    if w.skip and w.skip(mem) then
      w.i = w.i + 2
    else
      w.cur = w.make(mem, score)
      if not w.cur then
        w.stale[#w.stale + 1] = {w.z, mem}
        w.i = w.i + 2
      end
    end
  end
  return w.cur
end
local function advance(w)
  w.cur = nil
  w.i = w.i + 2
end
-- The head with the lower rank of two walks (nil when both are walked), and its walk.
local function lower(a, b)
  local x, y = head(a), head(b)
  if not x then return y, b end
  if not y then return x, a end
  if x.r1 ~= y.r1 then
    if x.r1 < y.r1 then return x, a end
    return y, b
  end
  if x.r2 ~= y.r2 then
    if x.r2 < y.r2 then return x, a end
    return y, b
  end
  if x.r3 <= y.r3 then return x, a end
  return y, b
end
local function meta_of(k) return try_parse(redis.call('HGET', META, k)) end
-- An entry with malformed metadata ranks first in every walk that meets it.
local function malformed(k) return {k = k, m = false, r1 = -1, r2 = 0, r3 = 0} end
-- Makers for walk: members of NEW (key, score seq) in the order of policy; of the read
-- indexes (seq..key, or for LFU aa..seq..key); of EXPI (key, score seq); of EXP (seq..key).
local function from_new(lfu)
  return function(k, score)
    local m = meta_of(k)
    if m == false then return malformed(k) end
    if not (m and m.new and tonumber(m.sq) == tonumber(score)) then return nil end
    if lfu then return {k = k, m = m, r1 = 0, r2 = tonumber(m.sa), r3 = tonumber(m.sq)} end
    return {k = k, m = m, r1 = tonumber(m.sa), r2 = tonumber(m.sq), r3 = 0}
  end
end
local function from_read(lfu)
  return function(mem, score)
    local k
    if lfu then k = string.sub(mem, 41) else k = string.sub(mem, 21) end
    local m = meta_of(k)
    if m == false then return malformed(k) end
    if not m or m.new then return nil end
    if lfu then
      if lfu_member(k, m) ~= mem then return nil end
      return {k = k, m = m, r1 = tonumber(m.ac), r2 = tonumber(m.aa), r3 = tonumber(m.sq)}
    end
    if member(k, m) ~= mem then return nil end
    return {k = k, m = m, r1 = tonumber(score), r2 = tonumber(m.sq), r3 = 0}
  end
end
local function from_expi(k, score)
  local m = meta_of(k)
  if m == false then return malformed(k) end
  if not (m and m.ein and tonumber(m.sq) == tonumber(score)) then return nil end
  return {k = k, m = m, r1 = tonumber(m.ea), r2 = tonumber(m.sq), r3 = 0}
end
local function from_exp(mem, score)
  local k = string.sub(mem, 21)
  local m = meta_of(k)
  if m == false then return malformed(k) end
  if not (m and not m.ein and member(k, m) == mem) then return nil end
  return {k = k, m = m, r1 = tonumber(m.ea), r2 = tonumber(m.sq), r3 = 0}
end
local function size_of(k, m)
  if m then return tonumber(m.sz) end
  return malformed_size(k)
end
-- The first up to limit entries expired at now (soonest expiry first, ties in write order),
-- not in gone, each marked in gone, as {key, metadata} in plan; returns their count and bytes
-- and whether no other expired entry is left. Changes nothing but the stale members it lists.
local function plan_purge(now, limit, gone, plan, stale)
  local t = tonumber(now)
  local a = walk(EXPI, nil, from_expi, stale)
  local b = walk(EXP, now, from_exp, stale)
  local n, bytes = 0, 0
  while true do
    local e, w = lower(a, b)
    if not e or e.r1 > t then return n, bytes, true end
    if n >= limit then return n, bytes, false end
    advance(w)
    if not gone[e.k] then
      gone[e.k] = true
      n = n + 1
      bytes = bytes + size_of(e.k, e.m)
      plan[#plan + 1] = {e.k, e.m}
    end
  end
end
-- Removes up to limit entries expired at now (see plan_purge), counted in c; marks their keys
-- in gone. Returns entries, bytes and whether no expired entry is left.
local function purge_expired(now, limit, c, gone)
  if limit <= 0 then return 0, 0, false end
  if nothing_expired(c, now) then return 0, 0, true end
  local plan, stale = {}, {}
  local n, bytes, done = plan_purge(now, limit, gone, plan, stale)
  remove_many(plan, c, stale)
  if done then refresh_next(c) end
  return n, bytes, done
end
-- Evicts in the order 'lrs', 'lru' or 'lfu' until c.b is at most target, never a key for
-- which protected(k) is true, at most cap entries: NEW merged with the policy's index of read
-- entries. Stale index members are dropped; an entry with malformed metadata is evicted
-- first (its malformed_size counted). Returns entries, bytes and whether it is done (at the
-- target or nothing left to evict).
local function evict_down(policy, target, protected, cap, c)
  local stale, plan, seen = {}, {}, {}
  local lfu = policy == 'lfu'
  local idx = LRS
  if lfu then idx = LFU elseif policy == 'lru' then idx = LRU end
  -- Protected keys are passed over unread (a write's own metadata is not stored yet).
  local skip = 21
  if lfu then skip = 41 end
  local a = walk(NEW, nil, from_new(lfu), stale, protected)
  local b = walk(idx, nil, from_read(lfu), stale,
    function(mem) return protected(string.sub(mem, skip)) end)
  local n, freed, done = 0, 0, false
  while true do
    if c.b - freed <= target then
      done = true
      break
    end
    if n >= cap then break end
    local e, w = lower(a, b)
    if not e then
      done = true
      break
    end
    advance(w)
    if not seen[e.k] then
      seen[e.k] = true
      n = n + 1
      freed = freed + size_of(e.k, e.m)
      plan[#plan + 1] = {e.k, e.m}
    end
  end
  remove_many(plan, c, stale)
  return n, freed, done
end
-- The lexicographic range of the keys starting with p (keys are UTF-8, which never holds the
-- byte 0xFF).
local function lex(p)
  if p == '' then return '-', '+' end
  return '[' .. p, '(' .. p .. '\255'
end
-- Staged values: a large value reaches a script under a key of its own, set just before the
-- script in the same pipeline (with a short server-side expiry in case the script never
-- runs), and is renamed into place (no copy through Lua). A staged value is never empty, so
-- a length of 0 means it is not there.
local function staged_len(sk)
  local n = redis.call('STRLEN', sk)
  if n == 0 then
    error('plexcache: a staged value is missing under prefix ' .. P .. ' (expired before its write ran)')
  end
  return n
end
-- Sets the value of k (inline in val, or staged under the key val) with its server-side
-- expiry: a safety net for values nobody purges, grace after the entry's time to live; the
-- metadata stays until purged, so the counters stay exact.
local function set_value(k, val, staged, sa, ea, grace)
  local vk = vkey(k)
  local px = safety_px(sa, ea, grace)
  if staged then
    redis.call('RENAME', val, vk)
    if px then redis.call('PEXPIRE', vk, px) else redis.call('PERSIST', vk) end
  elseif px then
    redis.call('SET', vk, val, 'PX', px)
  else
    redis.call('SET', vk, val)
  end
end
"#;

/// ARGV: prefix, key, value (or the staged value's key), stored_at, expires_at ('' = never),
/// max_bytes, policy ('' = none, refuse above max_bytes; 'lrs', 'lru', 'lfu': evict down to
/// it), purge limit, now, grace_ms, staged ('1': ARGV[3] names a staged value, '' otherwise).
/// Purges, writes and evicts (see `WriteLimit`); a refused write drops its staged value.
/// Returns `{stored (0/1), previous size (-1 = none), entries, bytes, expired entries, expired
/// bytes, evicted entries, evicted bytes}`.
///
/// The common case (nothing expired, room enough, a key never read since its last write,
/// clocks that do not go back) is one HMGET (counters and the old metadata), the value's SET,
/// its NEW and EXPI members moved in place (ZADD), and one HSET (metadata and counters); a new
/// key adds its z:keys member.
const PUT: &str = r#"
local k, val, sa, ea = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local maxb, policy = tonumber(ARGV[6]), ARGV[7]
local staged = ARGV[11] == '1'
local c, raw = load_counters(k)
local len
if staged then len = staged_len(val) else len = #val end
local gone = {}
local xn, xb = purge_expired(ARGV[9], tonumber(ARGV[8]), c, gone)
if gone[k] then raw = nil end
local old = try_parse(raw)
local size = #k + len
local oldsize = -1
if old then oldsize = tonumber(old.sz) elseif old == false then oldsize = malformed_size(k) end
if policy == '' and c.b - math.max(oldsize, 0) + size > maxb then
  if staged then redis.call('DEL', val) end
  save_counters(c)
  return {0, -1, c.e, c.b, xn, xb, 0, 0}
end
c.s = c.s + 1
local m = {sa = sa, ea = ea, aa = sa, ac = '0', sz = int(size), sq = int(c.s)}
place(m, c)
if old then
  -- The value and metadata are overwritten below; only the index members move (those of
  -- NEW and EXPI in place).
  unindex(k, old, m)
  c.e, c.b = c.e - 1, c.b - oldsize
elseif old == false then
  drop_malformed(k, c)
end
set_value(k, val, staged, sa, ea, tonumber(ARGV[10]))
index(k, m)
if not old then redis.call('ZADD', KEYS_IDX, 0, k) end
c.e, c.b = c.e + 1, c.b + size
lower_next(c, ea)
local en, eb = 0, 0
if policy ~= '' and c.b > maxb then
  en, eb = evict_down(policy, maxb, function(key) return key == k end, math.huge, c)
end
save_counters(c, k, pack(m))
return {1, oldsize, c.e, c.b, xn, xb, en, eb}
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
local c = load_counters()
local gone, stale = {}, {}
-- The purge: the first purge_limit entries that are really expired. purge_done: it leaves
-- none expired (F_NEXT is then taken afresh).
local purged, xn, xb = {}, 0, 0
local purge_done = false
if purge_limit > 0 and not nothing_expired(c, now) then
  xn, xb, purge_done = plan_purge(now, purge_limit, gone, purged, stale)
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
        local m = meta_of(k)
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
      local m = meta_of(k)
      if m ~= nil then
        replaced = replaced + size_of(k, m)
        olds[#olds + 1] = {k, m}
      end
    end
  end
end
local after = c.b - xb - rb - replaced + wb
-- Evicting every other entry leaves the batch's own bytes.
if wb > maxb or (policy == '' and after > maxb) then
  drop_staged(function(j) return false end)
  return {0, c.e, c.b, 0, 0, 0, 0, 0, 0, 0}
end
-- Apply: every removal (purged, removed, replaced) before every write, since a key may be
-- removed and written again.
remove_many(purged, c, stale)
remove_many(removed, c)
remove_many(olds, c)
drop_staged(function(j) return last[arg(j, 0)] == j end)
-- The written keys take the next `written` sequence numbers, in the order of their last put.
local new, expi, exp = bulk('ZADD', NEW), bulk('ZADD', EXPI), bulk('ZADD', EXP)
local keys, meta, values = bulk('ZADD', KEYS_IDX), bulk('HSET', META), bulk('MSET', nil)
for j = 0, nputs - 1 do
  local k = arg(j, 0)
  if last[k] == j then
    local val, ea = arg(j, 1), arg(j, 2)
    c.s = c.s + 1
    local m = {sa = sa, ea = ea, aa = sa, ac = '0', sz = int(#k + lens[j]), sq = int(c.s)}
    place(m, c)
    if arg(j, 3) == '1' or ea ~= '' then
      set_value(k, val, arg(j, 3) == '1', sa, ea, grace)
    else
      values.add(vkey(k), val)
    end
    meta.add(k, pack(m))
    if m.new then
      new.add(m.sq, k)
    else
      index(k, {sa = m.sa, ea = '', aa = m.aa, ac = m.ac, sq = m.sq, new = false, ein = false})
    end
    if m.ein then
      expi.add(m.sq, k)
    elseif ea ~= '' then
      exp.add(ea, member(k, m))
    end
    lower_next(c, ea)
    keys.add(0, k)
    c.e, c.b = c.e + 1, c.b + #k + lens[j]
  end
end
for _, b in ipairs({values, meta, new, expi, exp, keys}) do b.flush() end
local en, eb = 0, 0
if policy ~= '' and c.b > maxb then
  en, eb = evict_down(policy, maxb, function(k) return last[k] ~= nil end, math.huge, c)
end
if purge_done then refresh_next(c) end
save_counters(c)
return {1, c.e, c.b, rn, rb, written, xn, xb, en, eb}
"#;

/// ARGV: prefix, key. Returns the removed entry's metadata, or nil.
const REMOVE: &str = r#"
local k = ARGV[2]
local c, raw = load_counters(k)
if not raw then return false end
delete(k, parse(raw), c)
save_counters(c)
return raw
"#;

/// ARGV: prefix, lex min, lex max, batch. Removes up to `batch` keys of the range (an entry
/// with malformed metadata too). Returns `{entries removed, bytes removed, index members
/// examined}`.
const REMOVE_RANGE: &str = r#"
local ks = redis.call('ZRANGEBYLEX', KEYS_IDX, ARGV[2], ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
local c = load_counters()
local n, freed = 0, 0
for _, k in ipairs(ks) do
  local m = try_parse(redis.call('HGET', META, k))
  if m ~= nil then
    freed = freed + remove_entry(k, m, c)
    n = n + 1
  else
    redis.call('ZREM', KEYS_IDX, k)
  end
end
if n > 0 then save_counters(c) end
return {n, freed, #ks}
"#;

/// ARGV: prefix, now, limit. Removes up to `limit` expired entries, soonest expiry first,
/// ties in write order. Returns `{entries, bytes, done (1: no expired entry left)}`.
const PURGE: &str = r#"
local c = load_counters()
local n, freed, done = purge_expired(ARGV[2], tonumber(ARGV[3]), c, {})
save_counters(c)
if done then return {n, freed, 1} end
return {n, freed, 0}
"#;

/// ARGV: prefix, policy (lrs, lru, lfu), target bytes, protect? ('1'/'0'), protected key,
/// at most this many evictions. Returns `{entries, bytes, done (0/1)}`.
const EVICT: &str = r#"
local guarded, protect = ARGV[4] == '1', ARGV[5]
local c = load_counters()
local n, freed, done = evict_down(ARGV[2], tonumber(ARGV[3]),
  function(k) return guarded and k == protect end, tonumber(ARGV[6]), c)
if n > 0 then save_counters(c) end
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
/// metadata are skipped. An entry read for the first time since its write moves from NEW to
/// the indexes of read entries.
const RECORD: &str = r#"
local MAXC = 9007199254740992
for i = 2, #ARGV - 2, 3 do
  local k, at, cnt = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local m = meta_of(k)
  if m then
    local mem = member(k, m)
    if m.new then
      redis.call('ZREM', NEW, k)
      redis.call('ZADD', LRS, m.sa, mem)
    else
      redis.call('ZREM', LFU, lfu_member(k, m))
    end
    if tonumber(at) > tonumber(m.aa) then m.aa = at end
    local ac = tonumber(m.ac) + cnt
    if ac > MAXC then ac = MAXC end
    m.ac = int(ac)
    m.new = false
    redis.call('HSET', META, k, pack(m))
    redis.call('ZADD', LRU, m.aa, mem)
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
/// sizes, entries with an expiry, |new|, |lrs|, |lru|, |lfu|, |exp|, |keys|, values missing,
/// malformed metadata, entries never read, |exp-new|, expiries in exp-new}`, where a value the server dropped by its own
/// expiry (an expired entry not yet purged) is not missing, and an entry with malformed
/// metadata counts with its malformed size (as if it expired). O(n).
const INTEGRITY: &str = r#"
local now_ms = server_ms()
local grace = tonumber(ARGV[2])
local count, fresh, sum, with_exp, in_expi, missing, bad = 0, 0, 0, 0, 0, 0, 0
local all = redis.call('HGETALL', META)
for i = 1, #all, 2 do
  local k = all[i]
  if string.byte(k, 1) ~= 255 then
    local m = try_parse(all[i + 1])
    count = count + 1
    if m then
      sum = sum + tonumber(m.sz)
      if m.new then fresh = fresh + 1 end
      if m.ea ~= '' then with_exp = with_exp + 1 end
      if m.ein then in_expi = in_expi + 1 end
      if (m.ea == '' or tonumber(m.ea) + grace > now_ms)
          and redis.call('EXISTS', vkey(k)) == 0 then
        missing = missing + 1
      end
    else
      bad = bad + 1
      sum = sum + malformed_size(k)
    end
  end
end
local c = load_counters()
return {c.e, c.b, count, sum, with_exp, redis.call('ZCARD', NEW),
  redis.call('ZCARD', LRS), redis.call('ZCARD', LRU), redis.call('ZCARD', LFU),
  redis.call('ZCARD', EXP), redis.call('ZCARD', KEYS_IDX), missing, bad, fresh,
  redis.call('ZCARD', EXPI), in_expi}
"#;

/// ARGV: prefix. Moves the counters of the earlier layout (a hash `counters` of their own)
/// into META, once; returns 1 when it did.
const MIGRATE: &str = r#"
local CNT = P .. 'counters'
if redis.call('EXISTS', CNT) == 0 then return 0 end
if redis.call('HEXISTS', META, F_SEQ) == 0 then
  local r = redis.call('HMGET', CNT, 'entries', 'bytes', 'seq')
  redis.call('HSET', META, F_ENTRIES, r[1] or '0', F_BYTES, r[2] or '0', F_SEQ, r[3] or '0')
end
redis.call('DEL', CNT)
return 1
"#;

/// A script: its code and the SHA-1 the server knows it by (for `EVALSHA`), and the name of
/// the same code as a function of the library (for `FCALL`).
pub(crate) struct Lua {
    pub code: String,
    pub hash: String,
    pub function: String,
}

/// The scripts, and the same scripts as one Redis Functions library (Redis 7.0 or newer),
/// whose name carries a hash of its code, so that builds with other scripts sharing a server
/// each have their own.
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
    pub migrate: Lua,
    /// The library's code, for `FUNCTION LOAD REPLACE`.
    pub library: String,
}

const BODIES: [(&str, &str); 11] = [
    ("put", PUT),
    ("write_batch", WRITE_BATCH),
    ("remove", REMOVE),
    ("remove_range", REMOVE_RANGE),
    ("purge", PURGE),
    ("evict", EVICT),
    ("keys", KEYS),
    ("record", RECORD),
    ("add_stats", ADD_STATS),
    ("integrity", INTEGRITY),
    ("migrate", MIGRATE),
];

fn sha1(text: &str) -> String {
    redis::Script::new(text).get_hash().to_owned()
}

impl Scripts {
    pub(crate) fn new() -> Self {
        // The library: the prelude once, then one function per script.
        let mut functions = String::from(PRELUDE);
        for (name, body) in BODIES {
            functions.push_str(&format!(
                "redis.register_function('plexcache_@_{name}', function(KEYS, ARGV)\nset_prefix(ARGV[1])\n{body}\nend)\n"
            ));
        }
        let tag = format!("plexcache_{}", &sha1(&functions)[..16]);
        let library = format!(
            "#!lua name={tag}\n{}",
            functions.replace("plexcache_@_", &format!("{tag}_"))
        );
        let script = |name: &str, body: &str| {
            let code = format!("{PRELUDE}set_prefix(ARGV[1])\n{body}");
            Lua {
                hash: sha1(&code),
                code,
                function: format!("{tag}_{name}"),
            }
        };
        Self {
            put: script("put", PUT),
            write_batch: script("write_batch", WRITE_BATCH),
            remove: script("remove", REMOVE),
            remove_range: script("remove_range", REMOVE_RANGE),
            purge: script("purge", PURGE),
            evict: script("evict", EVICT),
            keys: script("keys", KEYS),
            record: script("record", RECORD),
            add_stats: script("add_stats", ADD_STATS),
            integrity: script("integrity", INTEGRITY),
            migrate: script("migrate", MIGRATE),
            library,
        }
    }
}
