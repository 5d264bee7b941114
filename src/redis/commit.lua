-- sipreg location commit, format 1 (RFC 3261 §10.3 steps 6-8 on one hash per AOR).
-- The ARGV, stored value and reply formats are documented in src/redis/script.rs.
-- Nothing is written until every check has passed (§10.3 step 7: all or nothing).
local key = KEYS[1]
local op, call_id, branch, policy = ARGV[1], ARGV[2], ARGV[4], ARGV[6]
local cseq, max, n = tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[7])
if not (cseq and max and n) or #ARGV ~= 7 + 5 * n
    or (op ~= 'F' and op ~= '*' and op ~= 'U' and op ~= 'A' and op ~= 'D')
    or (policy ~= 'R' and policy ~= 'E')
    or not string.match(ARGV[3], '^%d+$') or not string.match(branch, '^%d+$') then
  return redis.error_reply('SIPREG_BADARGS arguments are not commit format 1')
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sub, fmt = string.sub, string.format

-- Read the AOR: live bindings, and fields to purge (expired, or not in our format).
local raw = redis.call('HGETALL', key)
local live, purge = {}, {}
for i = 1, #raw, 2 do
  local f, v = raw[i], raw[i + 1]
  local e, r, c, b, l1, l2, l3, l4, p =
    string.match(v, '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)|()')
  e = tonumber(e)
  if e and e > now then
    l1, l2, l3, l4 = tonumber(l1), tonumber(l2), tonumber(l3), tonumber(l4)
    live[#live + 1] = {
      f = f, v = v, exp = e, reg = tonumber(r), cseq = tonumber(c), branch = b,
      cid = sub(v, p, p + l1 - 1),
      mk = sub(v, p + l1, p + l1 + l2 - 1),
      inst = sub(v, p + l1 + l2, p + l1 + l2 + l3 - 1),
      rid = sub(v, p + l1 + l2 + l3, p + l1 + l2 + l3 + l4 - 1),
    }
  else
    purge[#purge + 1] = f
  end
end

local function reply(status, list, evicted, changed)
  local out = {status, now, evicted, changed}
  for _, rec in ipairs(list) do
    out[#out + 1] = math.ceil((rec.exp - now) / 1000)
    out[#out + 1] = rec.v
  end
  return out
end

-- §10.3 step 7 with issue 14's branch rule: nil when the request may change `rec`.
-- The management API's ops (A, D) are not REGISTERs: the rule does not apply to them.
local admin = op == 'A' or op == 'D'
local function cseq_status(rec)
  if admin or rec.cid ~= call_id or cseq > rec.cseq then return nil end
  if cseq == rec.cseq and branch == rec.branch then return 'RETRANSMISSION' end
  return 'INVALID_CSEQ'
end

local function encode(exp, reg, mk, inst, rid, blob)
  return fmt('%.0f %.0f %.0f %s %d %d %d %d|', exp, reg, cseq, branch,
             #call_id, #mk, #inst, #rid) .. call_id .. mk .. inst .. rid .. blob
end

if op == 'F' then
  if #purge > 0 then redis.call('HDEL', key, unpack(purge)) end
  return reply('OK', live, 0, 0)
end

if op == '*' then
  for _, rec in ipairs(live) do
    local s = cseq_status(rec)
    if s == 'RETRANSMISSION' then return reply(s, live, 0, 0) end
    if s then return {s, now, 0, 0} end
  end
  redis.call('DEL', key)
  return reply('OK', {}, 0, #live)
end

-- op == 'D' (management API): remove every live binding (n = 0), or those whose match
-- key is one of the n given (the other values of each contact are not read). The
-- third reply element is the number of live bindings removed.
if op == 'D' then
  local gone, del, keep, longest = {}, purge, {}, 0
  for i = 0, n - 1 do gone[ARGV[8 + 5 * i]] = true end
  for _, rec in ipairs(live) do
    if n == 0 or gone[rec.mk] then
      del[#del + 1] = rec.f
    else
      keep[#keep + 1] = rec
      if rec.exp > longest then longest = rec.exp end
    end
  end
  if #keep == 0 then
    redis.call('DEL', key)
  elseif #del > 0 then
    redis.call('HDEL', key, unpack(del))
    redis.call('PEXPIREAT', key, fmt('%.0f', longest))
  end
  return reply('OK', keep, #live - #keep, #live - #keep)
end

-- op == 'U' or 'A': match every contact, check everything, then write.
local inserts = {}
for i = 0, n - 1 do
  local a = 8 + 5 * i
  local mk, inst, rid, exps, blob = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3]), ARGV[a + 4]
  if not string.match(ARGV[a + 3], '^%d+$') or (rid ~= '' and not string.match(rid, '^%d+$'))
      or (inst ~= '' and string.sub(inst, 1, 1) ~= '=') then
    return redis.error_reply('SIPREG_BADARGS arguments are not commit format 1')
  end
  local found
  for _, rec in ipairs(live) do
    local same
    if inst ~= '' and rec.inst ~= '' then
      same = inst == rec.inst and rid == rec.rid
    else
      same = mk == rec.mk
    end
    if same then found = rec; break end
  end
  if found then
    local s = cseq_status(found)
    if s == 'RETRANSMISSION' then return reply(s, live, 0, 0) end
    if s then return {s, now, 0, 0} end
    found.touched = true
    if exps == 0 then
      found.remove = true
    else
      found.remove = nil
      found.exp = now + exps * 1000
      found.v = encode(found.exp, found.reg, mk, inst, rid, blob)
      found.dirty = true
    end
  elseif exps > 0 then
    local exp = now + exps * 1000
    inserts[#inserts + 1] = {exp = exp, v = encode(exp, now, mk, inst, rid, blob)}
  end
end

local count = #inserts
for _, rec in ipairs(live) do
  if not rec.remove then count = count + 1 end
end
local evicted = 0
if max > 0 and count > max then
  if policy == 'R' then return {'TOO_MANY', now, 0, 0} end
  local victims = {}
  for _, rec in ipairs(live) do
    if not rec.touched then victims[#victims + 1] = rec end
  end
  table.sort(victims, function(x, y)
    if x.reg ~= y.reg then return x.reg < y.reg end
    return x.f < y.f
  end)
  for _, rec in ipairs(victims) do
    if count <= max then break end
    rec.remove = true
    count = count - 1
    evicted = evicted + 1
  end
  if count > max then return {'TOO_MANY', now, 0, 0} end
end

-- Write: purge, remove, update, insert (new fields take the smallest free numbers).
-- `changed` counts the bindings this request adds or removes (evictions included, lazy
-- purges not): what a replica must hold before the 200 when the node waits for one.
local del, set, used, after, longest = purge, {}, {}, {}, 0
local changed = #inserts
for _, rec in ipairs(live) do
  if rec.remove then
    changed = changed + 1
    del[#del + 1] = rec.f
  else
    used[rec.f] = true
    after[#after + 1] = rec
    if rec.dirty then set[#set + 1] = rec.f; set[#set + 1] = rec.v end
  end
end
local next_field = 1
for _, ins in ipairs(inserts) do
  while used[tostring(next_field)] do next_field = next_field + 1 end
  ins.f = tostring(next_field)
  used[ins.f] = true
  set[#set + 1] = ins.f
  set[#set + 1] = ins.v
  after[#after + 1] = ins
end
if #after == 0 then
  redis.call('DEL', key)
  return reply('OK', after, evicted, changed)
end
if #del > 0 then redis.call('HDEL', key, unpack(del)) end
if #set > 0 then redis.call('HSET', key, unpack(set)) end
for _, rec in ipairs(after) do
  if rec.exp > longest then longest = rec.exp end
end
redis.call('PEXPIREAT', key, fmt('%.0f', longest))
return reply('OK', after, evicted, changed)
