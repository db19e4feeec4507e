// The Lua scripts behind every multi-step change in Redis: each runs atomically, and each reads the
// time from Redis (TIME), so instances whose clocks disagree still agree on expiries and windows.
// ioredis sends them as EVALSHA and falls back to EVAL after a Redis restart (NOSCRIPT).

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

export interface ScriptDef {
  numberOfKeys: number;
  lua: string;
}

/**
 * KEYS: leases (zset: lease id -> expiry ms). ARGV: id, max, ttlMs.
 * 1: acquired (or already held: a retried call), 0: all `max` slots are held.
 */
const leaseAcquire: ScriptDef = {
  numberOfKeys: 1,
  lua: `${NOW}
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1`,
};

/**
 * KEYS: leases. ARGV: max, ttlMs, id...: extend each; one that expired meanwhile (a pause, or a
 * Redis that lost its data) is added again while there is room, else it is lost.
 * Returns {re-added count, lost id...}.
 */
const leaseRenew: ScriptDef = {
  numberOfKeys: 1,
  lua: `${NOW}
local max = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {0}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], now + ttl, id)
  elseif redis.call('ZCARD', KEYS[1]) < max then
    redis.call('ZADD', KEYS[1], now + ttl, id)
    out[1] = out[1] + 1
  else
    out[#out + 1] = id
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ttl) end
return out`,
};

/** KEYS: leases. ARGV: id, channel, event. Publishes `event` when the lease was still there. */
const leaseRelease: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0`,
};

/**
 * KEYS: rate (zset: "grantId|count" -> grant ms), rate sum. ARGV: limit, want, windowMs, grantId.
 * The window is 60 s plus the permits' validity: a permit spent at the end of its validity still
 * counts for a full minute after. Returns {granted, retry-after ms when nothing was granted}.
 */
const rateGrant: ScriptDef = {
  numberOfKeys: 2,
  lua: `${NOW}
local limit = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local horizon = now - window
local sum = tonumber(redis.call('GET', KEYS[2]) or '0')
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', horizon)
for _, m in ipairs(old) do
  sum = sum - tonumber(string.match(m, '|(%d+)$'))
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon) end
if sum < 0 or redis.call('ZCARD', KEYS[1]) == 0 then sum = 0 end
local granted = math.min(want, limit - sum)
if granted <= 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local retry = window
  if first[2] then retry = tonumber(first[2]) + window - now end
  redis.call('SET', KEYS[2], sum, 'PX', window)
  return {0, retry}
end
redis.call('ZADD', KEYS[1], now, ARGV[4] .. '|' .. granted)
redis.call('SET', KEYS[2], sum + granted, 'PX', window)
redis.call('PEXPIRE', KEYS[1], window)
return {granted, 0}`,
};

/** KEYS: rate, rate sum. ARGV: member ("grantId|count"), unused. Returns the permits given back. */
const rateGiveBack: ScriptDef = {
  numberOfKeys: 2,
  lua: `
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local id, count = string.match(ARGV[1], '^(.*)|(%d+)$')
count = tonumber(count)
local back = math.min(count, tonumber(ARGV[2]))
redis.call('ZREM', KEYS[1], ARGV[1])
if count > back then redis.call('ZADD', KEYS[1], score, id .. '|' .. (count - back)) end
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('DECRBY', KEYS[2], back) end
return back`,
};

/**
 * KEYS: lock, fence. ARGV: owner, ttlMs. Returns {fence, 0} or {0, ms the holder has left}.
 * The fence starts at the microseconds of Redis's clock, so it rises even across a Redis that lost
 * its data: a holder from before never matches a fence granted after.
 */
const lockAcquire: ScriptDef = {
  numberOfKeys: 2,
  lua: `
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, redis.call('PTTL', KEYS[1])} end
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])))
end
local fence = redis.call('INCR', KEYS[2])
-- the value as Redis wrote it: Lua would print a number this large in exponent notation
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. redis.call('GET', KEYS[2]), 'PX', ARGV[2])
return {fence, 0}`,
};

/** KEYS: lock. ARGV: "owner|fence", channel, event. Only the holder releases. */
const lockRelease: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0`,
};

/**
 * Compare-and-set of the rotated refresh token. KEYS: refresh (hash v, fp, origin, fence of the
 * writer), fence. ARGV: fence, origin (fingerprint of the configured token, or 'authorized'),
 * fingerprint of the token used, sealed next, fingerprint of next, '1' when this lineage may start
 * from nothing stored.
 * fenced: the lock was granted again since; stale: the stored token of this lineage is not the one
 * used. Nothing of this lineage stored (its first rotation, or data lost): the fence decides, for a
 * configured lineage only (an authorized token that is gone was removed or replaced).
 * No fence at all: Redis lost its data while the holder was refreshing, and no lock was granted
 * since (taking one creates the fence), so nobody refreshed after it, and the provider has already
 * retired the token it used: `next` is written unless a holder from before the loss with a later
 * fence wrote first; over a copy some instance seeded meanwhile (never newer) for a configured
 * lineage, over nothing only for an authorized one (another token there may be a new authorization).
 * `next` already stored: ok (a retry whose first answer was lost).
 */
const rotate: ScriptDef = {
  numberOfKeys: 2,
  lua: `
local fence = redis.call('GET', KEYS[2])
local cur = redis.call('HMGET', KEYS[1], 'origin', 'fp', 'fence')
if cur[1] == ARGV[2] and cur[2] == ARGV[5] then return 'ok' end
local lost = not fence
if lost then
  if cur[3] and tonumber(cur[3]) > tonumber(ARGV[1]) then return 'fenced' end
elseif fence ~= ARGV[1] then
  return 'fenced'
end
local configured = ARGV[6] == '1'
if cur[1] == ARGV[2] then
  if cur[2] ~= ARGV[3] and not (lost and configured) then return 'stale' end
elseif not configured and (cur[1] or not lost) then
  return 'stale'
end
redis.call('HSET', KEYS[1], 'v', ARGV[4], 'fp', ARGV[5], 'origin', ARGV[2], 'fence', ARGV[1])
return 'ok'`,
};

/**
 * KEYS: refresh. ARGV: sealed token, fingerprint, origin. Writes only when Redis holds no refresh
 * token for the mailbox (it lost its data): the instances that still know one agree on the first.
 */
const seedRefresh: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'fp', ARGV[2], 'origin', ARGV[3])
return 1`,
};

/** KEYS: token (hash). ARGV: fingerprint, or '' for any. Deletes when it still holds that token. */
const tokenInvalidate: ScriptDef = {
  numberOfKeys: 1,
  lua: `
if ARGV[1] == '' or redis.call('HGET', KEYS[1], 'fp') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`,
};

/**
 * KEYS: token (hash). ARGV: sealed token, exp, lineage, fingerprint. An access token got while Redis
 * could not be reached, put back unless the one there lasts as long or longer. Returns 1 if written.
 */
const tokenRestore: ScriptDef = {
  numberOfKeys: 1,
  lua: `
local cur = redis.call('HGET', KEYS[1], 'exp')
if cur and tonumber(cur) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'exp', ARGV[2], 'lin', ARGV[3], 'fp', ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1`,
};

export const SCRIPTS = {
  xoLeaseAcquire: leaseAcquire,
  xoLeaseRenew: leaseRenew,
  xoLeaseRelease: leaseRelease,
  xoRateGrant: rateGrant,
  xoRateGiveBack: rateGiveBack,
  xoLockAcquire: lockAcquire,
  xoLockRelease: lockRelease,
  xoRotate: rotate,
  xoSeedRefresh: seedRefresh,
  xoTokenInvalidate: tokenInvalidate,
  xoTokenRestore: tokenRestore,
} as const;

export type ScriptName = keyof typeof SCRIPTS;
