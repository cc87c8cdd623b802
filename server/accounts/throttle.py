"""Login throttling: every attempt is counted in Redis, atomically, before its password is checked.

Counting after the (slow, argon2) check let 40 simultaneous guesses all be checked: each read the
counter before any wrote it. Here one Lua script checks every limit and counts the attempt in the same
step, so of N simultaneous attempts exactly `limit` get their password checked and the rest are refused.

The limits, each over a window that starts at its first attempt (LOGIN_FAILURE_WINDOW_SECONDS):
- per account and source network (the /24 or /48 of server/tracking/visitor.py; the client address is
  the one uvicorn took from X-Forwarded-For for TRUSTED_PROXIES only): a guesser locks out only their
  own network, the owner still logs in from theirs;
- per account over all networks, looser: guessing spread over many networks still stops. Networks the
  account logged in from recently are exempt, so even then the owner is not locked out at home;
- per network over all accounts: one network trying many accounts (password spraying); also waived for
  an account on a network it logged in from recently.
A successful login takes its attempt back from the counters and clears its account-and-network count.

Redis unavailable: logins are refused with 503 (fail closed). A count kept in this process would let each
process and each restart grant a fresh allowance (the bypass this module exists to stop), and a database
count would add writes to every attempt for an outage that /healthz reports and that sessions (kept in the
database) ride out: people already logged in keep working.
"""

from __future__ import annotations

import hashlib
import logging
import time

from redis.asyncio import Redis

from server.core.errors import ServiceUnavailable, TooManyRequests
from server.core.i18n import _, ngettext
from server.core.net import truncate_ip
from server.core.settings import Settings

log = logging.getLogger("affnet.accounts")

KNOWN_NETWORK_SECONDS = 30 * 24 * 3600  # a network the account logged in from stays "its own" this long
REDIS_DOWN_RETRY_AFTER = 30

# KEYS: 1 account+network, 2 account (all networks), 3 network (all accounts), 4 "account logged in here".
# ARGV: 1 window in seconds, 2..4 the limits of KEYS 1..3. Returns {0, 0} when the attempt may be checked
# (and counted it), else {which limit, seconds until it lifts} (and counted nothing: refused attempts
# must not push the looser limits up, or a throttled guesser could still lock the owner out everywhere).
_ATTEMPT = """
local known = redis.call('EXISTS', KEYS[4]) == 1
for i = 1, 3 do
  if i == 1 or not known then
    local count = tonumber(redis.call('GET', KEYS[i]) or '0')
    if count >= tonumber(ARGV[i + 1]) then
      return {i, redis.call('TTL', KEYS[i])}
    end
  end
end
for i = 1, 3 do
  if redis.call('INCR', KEYS[i]) == 1 then
    redis.call('EXPIRE', KEYS[i], ARGV[1])
  end
end
return {0, 0}
"""

# After a right password: the attempt was no failure. KEYS as above; ARGV: 1 seconds to remember the network.
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
for i = 2, 3 do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count > 0 then redis.call('DECR', KEYS[i]) end
end
redis.call('SET', KEYS[4], '1', 'EX', ARGV[1])
return 1
"""


def network_of(ip: str) -> str:
    return truncate_ip(ip)


def _keys(email: str, ip: str) -> list[str]:
    account = _account(email)
    network = network_of(ip)
    return [
        f"login:try:acct-net:{account}:{network}",
        f"login:try:acct:{account}",
        f"login:try:net:{network}",
        f"login:known:{account}:{network}",
    ]


def _minutes(seconds: int) -> str:
    minutes = max((seconds + 59) // 60, 1)
    return ngettext("%(num)s minute", "%(num)s minutes", minutes)


def _refusal(which: int, ttl: int) -> TooManyRequests:
    wait = _minutes(ttl)
    if which == 1:
        return TooManyRequests(
            _(
                "Too many wrong passwords for this account from your network. Try again in %(wait)s, or log in "
                "from another network (for example your phone's mobile data). Logins from other networks are "
                "not affected.",
                wait=wait,
            ),
            retry_after=ttl,
            code="throttled_account_network",
        )
    if which == 2:
        return TooManyRequests(
            _(
                "This account has received too many wrong passwords from many networks, so logins from networks "
                "it has not used recently are paused for %(wait)s. You can still log in from a network you logged "
                "in from before (home or office).",
                wait=wait,
            ),
            retry_after=ttl,
            code="throttled_account",
        )
    return TooManyRequests(
        _(
            "Too many failed logins from your network, for several accounts. Try again in %(wait)s, or from "
            "another network.",
            wait=wait,
        ),
        retry_after=ttl,
        code="throttled_network",
    )


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        _(
            "Logging in is paused for a moment: the service that guards logins against password guessing is "
            "unavailable. Please try again in a minute. If you are already logged in elsewhere, you stay "
            "logged in."
        ),
        retry_after=REDIS_DOWN_RETRY_AFTER,
        code="login_unavailable",
    )


async def count_attempt(redis: Redis, settings: Settings, email: str, ip: str) -> None:
    """Count this attempt, or refuse it (TooManyRequests) if a limit is reached; 503 if Redis is away."""
    limits = (
        settings.login_max_failures_per_account,
        settings.login_max_failures_per_account_all_networks,
        settings.login_max_failures_per_ip,
    )
    try:
        which, ttl = await redis.eval(_ATTEMPT, 4, *_keys(email, ip), settings.login_failure_window_seconds, *limits)
    except Exception as exc:  # noqa: BLE001 - Redis unreachable, timing out, or restarting
        log.warning("login throttle unavailable, refusing logins: %s", exc)
        raise _unavailable() from None
    if int(which):
        raise _refusal(int(which), max(int(ttl), 1))


async def succeeded(redis: Redis, email: str, ip: str) -> None:
    """Give back the attempt of a right password and remember the network as the account's own."""
    try:
        await redis.eval(_SUCCEEDED, 4, *_keys(email, ip), KNOWN_NETWORK_SECONDS)
    except Exception as exc:  # noqa: BLE001 - the login itself stands; the count lapses with its window
        log.warning("could not clear the login throttle after a successful login: %s", exc)


# --- mail that lifts or follows a limit (server/accounts/mailbox.py) ----------------------------

RECOVERY_WINDOW_SECONDS = 3600
RECOVERY_MAX_PER_ADDRESS = 5  # reset links to one address in an hour
RECOVERY_MAX_PER_NETWORK = 20  # and asked for from one network, over all addresses

# Count in every key of KEYS (each a window from its first count, ARGV[1] seconds); the counts.
_COUNT = """
local counts = {}
for i = 1, #KEYS do
  counts[i] = redis.call('INCR', KEYS[i])
  if counts[i] == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
end
return counts
"""


def _account(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


async def allow_recovery_mail(redis: Redis, purpose: str, email: str, ip: str) -> bool:
    """Count a request for a mail to `email` (a reset link); False once the address or the network
    asked too often this hour. Also False while Redis is away: no limit, no mail."""
    keys = [f"mail:{purpose}:addr:{_account(email)}", f"mail:{purpose}:net:{network_of(ip)}"]
    try:
        counts = await redis.eval(_COUNT, len(keys), *keys, RECOVERY_WINDOW_SECONDS)
    except Exception as exc:  # noqa: BLE001 - Redis away: refuse quietly, as logins do
        log.warning("recovery mail limit unavailable, not sending: %s", exc)
        return False
    return int(counts[0]) <= RECOVERY_MAX_PER_ADDRESS and int(counts[1]) <= RECOVERY_MAX_PER_NETWORK


async def first_unlock_mail(redis: Redis, email: str, window_seconds: int) -> str | None:
    """Whether this refusal is the first of the account's throttle window to mail its owner: the
    window's mark (its start, to name the mail once) or None when a mail already went."""
    mark = str(int(time.time()))
    try:
        taken = await redis.set(f"login:unlock-mailed:{_account(email)}", mark, nx=True, ex=window_seconds)
    except Exception as exc:  # noqa: BLE001 - no Redis, no mail: logins are refused anyway
        log.warning("could not note the unlock mail: %s", exc)
        return None
    return mark if taken else None


async def clear_account(redis: Redis, email: str) -> None:
    """Forget every count against this account, on every network (a reset password, an unlock link):
    its owner logs in at once. The network-wide counts stay: they are about the network."""
    account = _account(email)
    try:
        names = [key async for key in redis.scan_iter(match=f"login:try:acct-net:{account}:*", count=500)]
        await redis.delete(f"login:try:acct:{account}", f"login:unlock-mailed:{account}", *names)
    except Exception as exc:  # noqa: BLE001 - the counts lapse with their window anyway
        log.warning("could not clear the login throttle of an account: %s", exc)
