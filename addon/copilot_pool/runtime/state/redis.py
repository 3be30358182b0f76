"""`pool_state=redis://HOST:PORT/DB` (or `rediss://` for TLS): the pool's state in Redis, shared by every proxy
that names the same server and database.

The `redis` package's asyncio client. The password comes only from the environment (COPILOT_POOL_REDIS_PASSWORD):
mitmweb shows every option's value. What lives where (all under `copilot-pool:`):

- `cooldowns` hash, `OWNER<TAB>MODEL` -> `UNTIL<TAB>REASON`: extended only, by a Lua script that compares and
  sets in one step, so two proxies cooling the same account keep the later end; a change is published at once on
  the `news` channel, which every proxy listens to (a cooldown reaches the others in milliseconds).
- `facts` hash, account -> JSON (failure, quota, usage limits, paces); the latest writer wins.
- `counters:OWNER` hashes: totals, added to by a Lua script that applies each batch once (a batch whose answer
  was lost is sent again with the same id and not counted twice) and answers with the totals; growth is
  published, so the others read the new totals at their next write.
- `affinity` and `sessions` hashes, KEY -> `ACCOUNT<TAB>EPOCH`, published as they change: each proxy keeps a copy,
  so its reads stay local.
- only with pool_share_tokens: `token:ACCOUNT`, the account's Copilot token as one proxy exchanged it (JSON, with a
  digest of the credential it was exchanged with), expiring with the token; `exchanging:ACCOUNT`, held (SET NX,
  for seconds) by the proxy exchanging it now, so the others wait for its token instead of exchanging too.
- `proxies` set and `inflight:PROXY` hashes (account -> requests in flight) that expire DEAD_AFTER seconds after
  the proxy's last heartbeat: a proxy that dies stops counting by itself, whatever the clocks say.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ...core.kept import Cooled, Counters
from .store import Batch, Loaded, News, SharedToken, StoreDown

PASSWORD_ENV = "COPILOT_POOL_REDIS_PASSWORD"
PREFIX = "copilot-pool:"
COOLDOWNS, FACTS, AFFINITY, SESSIONS = (PREFIX + k for k in ("cooldowns", "facts", "affinity", "sessions"))
COUNTERS, INFLIGHT, PROXIES, NEWS = PREFIX + "counters:", PREFIX + "inflight:", PREFIX + "proxies", PREFIX + "news"
TOKEN, EXCHANGING = PREFIX + "token:", PREFIX + "exchanging:"
BATCHES = PREFIX + "batch:"  # a written batch's id, for a day: the same batch again adds nothing
DEAD_AFTER_MS = 3000  # a proxy whose heartbeat is this old no longer counts (heartbeats come every 0.5 s)
AFFINITY_KEPT = 7 * 86400.0

# KEYS[1]: the cooldowns hash. ARGV: the news channel, this proxy, then per cooldown: field, until, reason, exact.
COOL = """
local changed = {}
for i = 3, #ARGV, 4 do
  local untl, exact = tonumber(ARGV[i + 1]), ARGV[i + 3] == '1'
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local cur_until = cur and tonumber(string.match(cur, '^[^\\t]*'))
  if exact or not cur_until or untl > cur_until then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1] .. '\\t' .. ARGV[i + 2])
    table.insert(changed, {ARGV[i], ARGV[i + 1], ARGV[i + 2], exact})
  end
end
if #changed > 0 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({proxy = ARGV[2], cooldowns = changed}))
end
return #changed
"""

# KEYS[1]: this batch's marker, KEYS[2..]: one counters hash per owner. ARGV: the news channel, this proxy, then
# per owner: how many counters, then counter, growth pairs. Answers each owner's totals.
ADD = """
local fresh = redis.call('SET', KEYS[1], '1', 'NX', 'EX', 86400)
local i, grew, totals = 3, {}, {}
for k = 2, #KEYS do
  local n = tonumber(ARGV[i])
  i = i + 1
  for j = 1, n do
    if fresh then redis.call('HINCRBY', KEYS[k], ARGV[i], ARGV[i + 1]) end
    i = i + 2
  end
  if fresh and n > 0 then table.insert(grew, KEYS[k]) end
  totals[k - 1] = redis.call('HGETALL', KEYS[k])
end
if #grew > 0 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({proxy = ARGV[2], counters = grew}))
end
return totals
"""


def check_url(url: str) -> None:
    """Raise ValueError unless `url` is a redis:// or rediss:// URL without a password."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
    if parts.password is not None:
        raise ValueError(
            f"put the Redis password in the environment variable {PASSWORD_ENV}, not in the option "
            "(mitmweb shows every option's value)"
        )
    if parts.path not in ("", "/") and not parts.path.lstrip("/").isdigit():
        raise ValueError(f"the database must be a number (redis://host:port/0), got {parts.path!r}")


class RedisStore:
    backend = "redis"
    shared = True

    def __init__(self, url: str, proxy: str, password: str | None = None) -> None:
        check_url(url)
        self.url = url
        self.where = url
        self.proxy = proxy
        self.password = password if password is not None else os.environ.get(PASSWORD_ENV) or None
        self._client: aioredis.Redis | None = None
        self._pubsub = None

    async def connect(self) -> None:
        await self.close()
        client = aioredis.Redis.from_url(
            self.url,
            password=self.password,
            decode_responses=True,
            socket_connect_timeout=1.0,
            socket_timeout=2.0,
            retry=Retry(NoBackoff(), 0),  # the keeper retries, with its own backoff, and says so once
        )
        try:
            await client.ping()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(NEWS)  # before the load: nothing published between the two is missed
        except (RedisError, OSError) as e:
            await client.aclose()
            raise StoreDown(_why(e)) from None
        self._client, self._pubsub = client, pubsub
        self._cool = client.register_script(COOL)
        self._add = client.register_script(ADD)

    async def close(self) -> None:
        client, pubsub, self._client, self._pubsub = self._client, self._pubsub, None, None
        try:
            if pubsub is not None:
                await pubsub.aclose()
            if client is not None:
                await client.aclose()
        except (RedisError, OSError):
            pass

    async def load(self) -> Loaded:
        client = self._ready()
        try:
            return await self._load(client)
        except (RedisError, OSError) as e:
            raise StoreDown(_why(e)) from None

    async def _load(self, client: aioredis.Redis) -> Loaded:
        time = await client.time()
        now = time[0] + time[1] / 1e6
        loaded = Loaded()
        expired = []
        for field, value in (await client.hgetall(COOLDOWNS)).items():
            owner, _, model = field.partition("\t")
            until, _, reason = value.partition("\t")
            if float(until) > now:
                loaded.cooldowns.append(Cooled(owner, model or None, float(until), reason))
            else:
                expired.append(field)
        if expired:
            await client.hdel(COOLDOWNS, *expired)
        for owner, record in (await client.hgetall(FACTS)).items():
            try:
                loaded.facts[owner] = json.loads(record)
            except ValueError:
                continue
        keys = [key async for key in client.scan_iter(match=COUNTERS + "*", count=500)]
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            for key, totals in zip(keys, await pipe.execute(), strict=True):
                loaded.counters[key[len(COUNTERS) :]] = {k: int(v) for k, v in totals.items()}
        loaded.affinity = await self._bindings(client, AFFINITY, now - AFFINITY_KEPT)
        loaded.sessions = await self._bindings(client, SESSIONS, now)
        return loaded

    async def _bindings(self, client: aioredis.Redis, key: str, oldest: float) -> dict[str, tuple[str, float]]:
        found, stale = {}, []
        for field, value in (await client.hgetall(key)).items():
            account, _, moment = value.partition("\t")
            if float(moment) > oldest:
                found[field] = (account, float(moment))
            else:
                stale.append(field)
        if stale:
            await client.hdel(key, *stale)
        return found

    async def write(self, batch: Batch) -> dict[str, Counters]:
        client = self._ready()
        try:
            return await self._write(client, batch)
        except (RedisError, OSError) as e:
            raise StoreDown(_why(e)) from None

    async def _write(self, client: aioredis.Redis, batch: Batch) -> dict[str, Counters]:
        owners = list(batch.counters)
        async with client.pipeline(transaction=False) as pipe:
            if batch.cooldowns:
                args: list = [NEWS, self.proxy]
                for c in batch.cooldowns:
                    args += [f"{c.owner}\t{c.model or ''}", repr(c.until), c.reason, "1" if c.exact else "0"]
                await self._cool(keys=[COOLDOWNS], args=args, client=pipe)  # queued: run at execute
            if batch.facts:
                pipe.hset(FACTS, mapping={owner: json.dumps(facts) for owner, facts in batch.facts.items()})
            if owners:
                args = [NEWS, self.proxy]
                for owner in owners:
                    growth = batch.counters[owner]
                    args.append(len(growth))
                    for counter, value in growth.items():
                        args += [counter, value]
                await self._add(keys=[BATCHES + batch.id, *(COUNTERS + o for o in owners)], args=args, client=pipe)
            if batch.affinity:
                pipe.hset(AFFINITY, mapping={k: f"{a}\t{t!r}" for k, (a, t) in batch.affinity.items()})
            if batch.sessions:
                pipe.hset(SESSIONS, mapping={k: f"{a}\t{t!r}" for k, (a, t) in batch.sessions.items()})
            if batch.affinity or batch.sessions:
                news = {"proxy": self.proxy, "affinity": batch.affinity, "sessions": batch.sessions}
                pipe.publish(NEWS, json.dumps(news))
            results = await pipe.execute()
        if not owners:
            return {}
        answered = results[int(bool(batch.cooldowns)) + int(bool(batch.facts))]
        return {owner: _pairs(flat) for owner, flat in zip(owners, answered, strict=True)}

    async def heartbeat(self, in_flight: dict[str, int]) -> tuple[dict[str, int], list[str]]:
        client = self._ready()
        try:
            return await self._heartbeat(client, in_flight)
        except (RedisError, OSError) as e:
            raise StoreDown(_why(e)) from None

    async def _heartbeat(self, client: aioredis.Redis, in_flight: dict[str, int]) -> tuple[dict[str, int], list[str]]:
        mine = INFLIGHT + self.proxy
        async with client.pipeline(transaction=True) as pipe:
            pipe.delete(mine)
            pipe.hset(mine, mapping={".": 1, **in_flight})  # "." marks the proxy alive with nothing in flight
            pipe.pexpire(mine, DEAD_AFTER_MS)
            pipe.sadd(PROXIES, self.proxy)
            pipe.smembers(PROXIES)
            members = sorted((await pipe.execute())[-1])
        others = [m for m in members if m != self.proxy]
        async with client.pipeline(transaction=False) as pipe:
            for other in others:
                pipe.hgetall(INFLIGHT + other)
            answers = await pipe.execute() if others else []
        elsewhere: dict[str, int] = {}
        live, dead = [self.proxy], []
        for other, counts in zip(others, answers, strict=True):
            if not counts:
                dead.append(other)  # its heartbeat stopped: its requests no longer count
                continue
            live.append(other)
            for account, n in counts.items():
                if account != ".":
                    elsewhere[account] = elsewhere.get(account, 0) + int(n)
        if dead:
            await client.srem(PROXIES, *dead)
        return elsewhere, live

    async def news(self) -> AsyncIterator[News]:
        pubsub = self._pubsub
        if pubsub is None:
            raise StoreDown("not connected")
        try:
            async for message in pubsub.listen():
                news = self._read(message.get("data"))
                if news is not None:
                    yield news
        except (RedisError, OSError) as e:
            raise StoreDown(_why(e)) from None

    def _read(self, data: object) -> News | None:
        """One published message, unless it is this proxy's own (or not one of ours)."""
        try:
            message = json.loads(data) if isinstance(data, str) else None
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("proxy") == self.proxy:
            return None
        news = News()
        for field, until, reason, exact in message.get("cooldowns") or []:
            owner, _, model = field.partition("\t")
            news.cooldowns.append(Cooled(owner, model or None, float(until), reason, bool(exact)))
        news.affinity = {k: (a, float(t)) for k, (a, t) in (message.get("affinity") or {}).items()}
        news.sessions = {k: (a, float(t)) for k, (a, t) in (message.get("sessions") or {}).items()}
        news.counters = [key[len(COUNTERS) :] for key in message.get("counters") or []]
        return news

    # -- Copilot tokens, shared only with pool_share_tokens ------------------------------------------

    async def shared_token(self, account: str, credential: str) -> SharedToken | None:
        client = self._ready()
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.get(TOKEN + account)
                pipe.pttl(TOKEN + account)
                record, left_ms = await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreDown(_why(e)) from None
        try:
            kept = json.loads(record) if record else None
            if not isinstance(kept, dict) or kept.get("credential") != credential or left_ms <= 0:
                return None
            return SharedToken(
                str(kept["token"]),
                left_ms / 1000,
                float(kept["refresh_lead"]),
                kept.get("api"),
                kept.get("proxy"),
                str(kept.get("sku", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None  # not one of ours: this proxy exchanges its own

    async def claim_exchange(self, account: str, seconds: float) -> bool:
        client = self._ready()
        try:
            return bool(await client.set(EXCHANGING + account, self.proxy, nx=True, px=int(seconds * 1000)))
        except (RedisError, OSError) as e:
            raise StoreDown(_why(e)) from None

    async def share_token(self, account: str, credential: str, token: SharedToken) -> None:
        client = self._ready()
        record = {
            "credential": credential,
            "token": token.token,
            "refresh_lead": token.refresh_lead,
            "api": token.api_endpoint,
            "proxy": token.proxy_endpoint,
            "sku": token.sku,
        }
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(TOKEN + account, json.dumps(record), px=max(1, int(token.lifetime * 1000)))
                pipe.delete(EXCHANGING + account)
                await pipe.execute()
        except (RedisError, OSError) as e:
            raise StoreDown(_why(e)) from None

    def _ready(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreDown("not connected")
        return self._client


def _pairs(flat: list | dict) -> Counters:
    if isinstance(flat, dict):
        return {k: int(v) for k, v in flat.items()}
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
