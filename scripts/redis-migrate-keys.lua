-- One-time rename of a RelayAPI Redis store from the key names before hash tags (relays up to the
-- release that introduced Redis Cluster support) to the tagged names (docs/redis.md, "Upgrading").
-- Standalone Redis only (a Cluster never held the old names: they could not run there).
-- Stop every relay first, then run scripts/redis-migrate-keys.sh, which calls this script batch by
-- batch so Redis is never blocked for long:
--   redis-cli --eval scripts/redis-migrate-keys.lua , <key_prefix> <cursor>
-- Answers {next cursor, renamed, left because the new name exists}. Keys already tagged, and keys
-- of other applications, are left alone.
local prefix, cursor = ARGV[1], ARGV[2]
local pattern = string.gsub(prefix, '([%*%?%[%]\\])', '\\%1') .. '*'
local scan = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
local renamed, clashes = 0, 0
local function tagged(rest)
  -- tok:T:J -> tok:{T:J}; rb:T -> rb:{T}; sp:T:L -> sp:{T:group}rest; rl:ip:X -> rl:ip:{X};
  -- rl:global -> rl:{global}. Tenant ids hold no ':'; an idempotency record is always tagged.
  if string.find(rest, '{', 1, true) then return nil end
  local t, j = string.match(rest, '^tok:([^:]+):(.+)$')
  if t then return 'tok:{' .. t .. ':' .. j .. '}' end
  t = string.match(rest, '^rb:([^:]+)$')
  if t then return 'rb:{' .. t .. '}' end
  local line
  t, line = string.match(rest, '^sp:([^:]+):(.+)$')
  if t then
    local first = string.find(line, '/', 1, true)
    local second = first and string.find(line, '/', first + 1, true)
    if second then
      return 'sp:{' .. t .. ':' .. string.sub(line, 1, second - 1) .. '}' .. string.sub(line, second)
    end
    return 'sp:{' .. t .. ':' .. line .. '}'
  end
  local ip = string.match(rest, '^rl:ip:(.+)$')
  if ip then return 'rl:ip:{' .. ip .. '}' end
  if rest == 'rl:global' then return 'rl:{global}' end
  return nil
end
for _, key in ipairs(scan[2]) do
  local new = tagged(string.sub(key, #prefix + 1))
  if new then
    if redis.call('RENAMENX', key, prefix .. new) == 1 then
      renamed = renamed + 1
    else
      clashes = clashes + 1
    end
  end
end
return {scan[1], renamed, clashes}
