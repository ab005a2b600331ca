"""The Lua scripts ``RedisState`` runs: the rules of ``windows.py`` executed inside Redis, so that a
check and its record are one atomic step however many replicas ask at once.

Scripts use the Redis server's ``TIME`` (Redis >= 5 replicates script effects, so this is
allowed), which makes windows exact even when replicas' clocks drift. All keys of one request
share the tenant's ``{hash tag}`` so the script also runs on Redis Cluster.

``ADMIT``
    KEYS: the limits' keys, then the budgets' keys.
    ARGV: request_id, reserve_usd, n_limits, then per limit ``kind`` (``r``/``t``) and ``limit``,
    then per budget ``limit_usd`` and ``ttl_ms``, then ``seed_missing`` (``1``/``0``).
    Returns ``[denied_index (0: admitted; 1-based over limits then budgets), wait_s,
    per limit: ok, used, reset_s, ..., per budget: spent_usd, ...]`` (floats as strings: Lua
    numbers become integers on the way out), or ``[-1, '0']`` when ``seed_missing`` is 1 and a
    budget key is absent: nothing recorded, the caller seeds it from the ledger and asks again.
``SETTLE``
    KEYS: the tokens limits' keys, then the budgets' keys.
    ARGV: n_token_limits, tokens, delta_usd, then per budget ``ttl_ms``.
    An absent budget key is left absent (Redis restarted or was flushed): the ledger seed that
    recreates it already holds this cost, or will once the ledger writer flushes.
"""

from __future__ import annotations

__all__ = ["ADMIT", "SETTLE"]

ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nl = tonumber(ARGV[3])
local base = 3 + 2 * nl
if ARGV[base + 2 * (#KEYS - nl) + 1] == '1' then
  for j = nl + 1, #KEYS do
    if redis.call('EXISTS', KEYS[j]) == 0 then return {-1, '0'} end
  end
end
local out = {}
local denied = 0
local wait = 0
for i = 1, nl do
  local key = KEYS[i]
  local kind = ARGV[2 + 2 * i]
  local limit = tonumber(ARGV[3 + 2 * i])
  local ok, used, reset
  if kind == 'r' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 60)
    local n = redis.call('ZCARD', key)
    if n >= limit then
      local e = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
      ok, used, reset = 0, n, tonumber(e[2]) + 60 - now
    else
      local e = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      ok, used, reset = 1, n + 1, 60
      if e[2] then reset = tonumber(e[2]) + 60 - now end
    end
  else
    local h = redis.call('HGETALL', key)
    local live = {}
    local total = 0
    for j = 1, #h, 2 do
      local s, v = tonumber(h[j]), tonumber(h[j + 1])
      if s > now - 60 then
        live[#live + 1] = {s, v}
        total = total + v
      else
        redis.call('HDEL', key, h[j])
      end
    end
    table.sort(live, function(a, b) return a[1] < b[1] end)
    used = total
    if total < limit then
      ok, reset = 1, 0
      if #live > 0 then reset = live[1][1] + 60 - now end
    else
      ok, reset = 0, 60
      local left = total
      for _, p in ipairs(live) do
        left = left - p[2]
        if left < limit then
          reset = p[1] + 60 - now
          break
        end
      end
    end
  end
  if reset < 0 then reset = 0 end
  if ok == 0 and denied == 0 then
    denied, wait = i, reset
  end
  out[#out + 1] = ok
  out[#out + 1] = used
  out[#out + 1] = tostring(reset)
end
local nb = #KEYS - nl
local spent = {}
for j = 1, nb do
  spent[j] = tonumber(redis.call('GET', KEYS[nl + j]) or '0')
  if denied == 0 and spent[j] >= tonumber(ARGV[base + 2 * j - 1]) then
    denied, wait = nl + j, -1
  end
end
if denied == 0 then
  for i = 1, nl do
    if ARGV[2 + 2 * i] == 'r' then
      redis.call('ZADD', KEYS[i], now, ARGV[1])
      redis.call('PEXPIRE', KEYS[i], 61000)
    end
  end
  for j = 1, nb do
    spent[j] = tonumber(redis.call('INCRBYFLOAT', KEYS[nl + j], ARGV[2]))
    redis.call('PEXPIRE', KEYS[nl + j], ARGV[base + 2 * j])
  end
end
local res = {denied, tostring(wait)}
for _, v in ipairs(out) do res[#res + 1] = v end
for j = 1, nb do res[#res + 1] = tostring(spent[j]) end
return res
"""

SETTLE = """
local sec = tonumber(redis.call('TIME')[1])
local nt = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local delta = tonumber(ARGV[3])
if tokens > 0 then
  for i = 1, nt do
    redis.call('HINCRBY', KEYS[i], sec, tokens)
    redis.call('EXPIRE', KEYS[i], 120)
  end
end
if delta ~= 0 then
  for j = nt + 1, #KEYS do
    if redis.call('EXISTS', KEYS[j]) == 1 then
      local v = tonumber(redis.call('INCRBYFLOAT', KEYS[j], ARGV[3]))
      if v < 0 then redis.call('SET', KEYS[j], '0', 'KEEPTTL') end
      if redis.call('PTTL', KEYS[j]) < 0 then redis.call('PEXPIRE', KEYS[j], ARGV[3 + j - nt]) end
    end
  end
end
return 1
"""
