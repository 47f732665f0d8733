"""Login throttling: failures in a row per client and per account, and growing delays.

Two counters slow password guessing down, kept in the database (table `login_throttle`)
so that every app process sees the same ones:

- per client (its address): guessing from one place, at any accounts;
- per account (the typed user id, case-folded, whether or not such an account exists,
  so that the answer never tells which exist): guessing from many places at one account.

The rule, chosen so that an attacker cannot turn it against an account's owner:

- A client with no failure in a row is checked at once, however many failures the
  account has from elsewhere: nothing anyone else does keeps the owner out.
- A client that has failed waits before its next attempt is checked: `delay(n)` after its
  own n-th failure (0.5 s doubling per failure, at most `max_delay_s`), plus the
  account's current delay, itself at most `max_delay_s`. The app sleeps the client's wait
  before answering a failure, so a person retyping a password never meets it again; what
  it stops is many attempts at once. An attempt whose client already has more than
  `max_delay_s` of attempts queued is not checked at all (`throttled`).
- Every attempt is counted before its password is checked, so parallel attempts each
  take their own turn. A success clears both counters; so does a password link. A
  counter older than `reset_s` counts as zero (and is deleted on the next failure).
"""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from aya_t5x.annotation import database
from aya_t5x.annotation.database import login_throttle


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThrottlePolicy:
  """How failed logins are slowed down.

  Attributes:
    delay_s: the wait after a client's first failure in a row; it doubles per failure.
    max_delay_s: the longest wait per counter, and the most a client may have queued.
    reset_s: a counter without a new failure for this long starts again from zero.
  """

  delay_s: float = 0.5
  max_delay_s: float = 10.0
  reset_s: float = 3600.0

  def __post_init__(self):
    if not 0 <= self.delay_s <= self.max_delay_s:
      raise ValueError(f"need 0 <= delay_s <= max_delay_s, got {self.delay_s} and "
                       f"{self.max_delay_s}")

  def delay(self, failures: int) -> float:
    """The wait after the `failures`-th failure in a row (0 for none)."""
    if failures <= 0:
      return 0.0
    return min(self.delay_s * 2 ** min(failures - 1, 64), self.max_delay_s)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Turn:
  """One login attempt's place: when it may be checked, or that it is not checked.

  Attributes:
    check_at: the time (time.time()) at which the password may be checked.
    throttled: the client has too many attempts queued; this one is refused unchecked.
    answer_at: when to answer should the password be wrong (the client's next turn).
  """

  check_at: float
  throttled: bool
  answer_at: float


def client_key(address: str) -> str:
  return f"client:{address}"


def account_key(user_id: str) -> str:
  return f"account:{database.user_key(user_id)}"


def _counter(conn: sa.Connection, db: database.Database, key: str, now: float,
             policy: ThrottlePolicy) -> tuple[int, float]:
  """(failures, next_at) of a key, locked for this transaction; (0, 0) when fresh."""
  conn.execute(db.insert(login_throttle).values(key=key, failures=0, next_at=0, updated=now)
               .on_conflict_do_nothing())
  failures, next_at, updated = conn.execute(
      sa.select(login_throttle.c.failures, login_throttle.c.next_at, login_throttle.c.updated)
      .where(login_throttle.c.key == key).with_for_update()).one()
  if updated < now - policy.reset_s:
    return 0, 0.0
  return failures, next_at


def take_turn(conn: sa.Connection, db: database.Database, *, client: str, user_id: str,
              now: float, policy: ThrottlePolicy) -> Turn:
  """Counts one attempt (as if it fails) and returns when it may be checked.

  Runs in the caller's write transaction; the client's row is locked before the account's
  in every transaction, so two attempts never wait on each other in opposite order.
  """
  keys = client_key(client), account_key(user_id)
  (client_failures, client_next), (account_failures, account_next) = (
      _counter(conn, db, key, now, policy) for key in keys)
  if client_failures == 0:
    check_at = now
  else:
    own_turn = max(now, client_next)
    if own_turn - now > policy.max_delay_s:
      return Turn(check_at=now, throttled=True, answer_at=now + policy.max_delay_s)
    check_at = own_turn + min(max(0.0, account_next - own_turn), policy.max_delay_s)
  client_failures += 1
  account_failures += 1
  answer_at = check_at + policy.delay(client_failures)
  for key, failures, next_at in ((keys[0], client_failures, answer_at),
                                 (keys[1], account_failures,
                                  check_at + policy.delay(account_failures))):
    conn.execute(login_throttle.update().where(login_throttle.c.key == key)
                 .values(failures=failures, next_at=next_at, updated=now))
  return Turn(check_at=check_at, throttled=False, answer_at=answer_at)


def clear(conn: sa.Connection, *, user_id: str, client: str | None = None) -> None:
  """After a success (or a new password): the account's counter and the client's go."""
  keys = [account_key(user_id)] + ([client_key(client)] if client is not None else [])
  conn.execute(login_throttle.delete().where(login_throttle.c.key.in_(keys)))


def forget_old(conn: sa.Connection, *, now: float, policy: ThrottlePolicy) -> None:
  """Deletes counters past `reset_s`, so guessed ids do not fill the table."""
  conn.execute(login_throttle.delete().where(login_throttle.c.updated < now - policy.reset_s))
