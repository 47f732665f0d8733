"""Login throttling: failures in a row per client and per account, and growing delays.

Two counters slow password guessing down, kept in the database (table `login_throttle`)
so that every app process sees the same ones:

- per client (its address): guessing from one place, at any accounts;
- per account (the typed user id, case-folded, whether or not such an account exists,
  so that the answer never tells which exist): guessing from many places at one account.

Each counter holds the failures in a row (settled) and the attempts being checked now
(pending). The rule, chosen so that an attacker cannot turn it against an account's
owner, nor one person behind a shared address against the others:

- A client without a failure in a row is checked at once, however many failures the
  account has from elsewhere: nothing anyone else does keeps the owner out. Only its
  attempts at one account beyond `parallel` in flight at once (many passwords tried at
  once) queue, `delay_s` apart; a crowd behind one address, each logging in to their own
  account, is never slowed by its numbers.
- A client with failures waits before its next attempt is checked: `delay(n)` after its
  n-th failure (`delay_s` doubling per failure, at most `max_delay_s`), plus the
  account's current delay, itself at most `max_delay_s`. The app sleeps the client's
  wait before answering a failure, so a person retyping a password never meets it again;
  what it stops is many attempts at once.
- An attempt whose turn lies more than `max_delay_s` ahead is not checked at all
  (`throttled`): only a client with that many attempts queued at once meets this.
- A success clears the account's counter and the client's failures; so does a password
  link (the account's). A counter untouched for `reset_s` counts as zero (and is deleted
  on the next failure).
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
    max_delay_s: the longest wait per counter, and how far ahead a turn may lie.
    parallel: attempts at one account a client without failures may have checked at once.
    reset_s: a counter untouched for this long starts again from zero.
  """

  delay_s: float = 0.5
  max_delay_s: float = 10.0
  parallel: int = 2
  reset_s: float = 3600.0

  def __post_init__(self):
    if not 0 <= self.delay_s <= self.max_delay_s:
      raise ValueError(f"need 0 <= delay_s <= max_delay_s, got {self.delay_s} and "
                       f"{self.max_delay_s}")
    if self.parallel < 1:
      raise ValueError(f"parallel must be at least 1, got {self.parallel}")

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
    throttled: too many attempts of this client are queued; this one is refused
      unchecked (and not counted).
    answer_at: when to answer should the password be wrong (the client's next turn).
  """

  check_at: float
  throttled: bool
  answer_at: float


def client_key(address: str) -> str:
  return f"client:{address}"


def account_key(user_id: str) -> str:
  return f"account:{database.user_key(user_id)}"


def pair_key(address: str, user_id: str) -> str:
  """One client's attempts at one account (their number in flight)."""
  return f"pair:{address}|{database.user_key(user_id)}"


@dataclasses.dataclass(kw_only=True)
class _Counter:
  """One key's row: failures in a row, attempts in flight (pair and account keys), and
  the earliest time of the next attempt."""

  failures: int = 0
  pending: int = 0
  next_at: float = 0.0


def _counter(conn: sa.Connection, db: database.Database, key: str, now: float,
             policy: ThrottlePolicy) -> _Counter:
  """A key's counter, its row locked for this transaction (a fresh one when stale)."""
  conn.execute(db.insert(login_throttle).values(key=key, failures=0, pending=0, next_at=0,
                                                updated=now).on_conflict_do_nothing())
  failures, pending, next_at, updated = conn.execute(
      sa.select(login_throttle.c.failures, login_throttle.c.pending, login_throttle.c.next_at,
                login_throttle.c.updated)
      .where(login_throttle.c.key == key).with_for_update()).one()
  if updated < now - policy.reset_s:
    return _Counter()
  return _Counter(failures=failures, pending=pending, next_at=next_at)


def _store(conn: sa.Connection, key: str, counter: _Counter, now: float) -> None:
  conn.execute(login_throttle.update().where(login_throttle.c.key == key).values(
      failures=counter.failures, pending=max(0, counter.pending), next_at=counter.next_at,
      updated=now))


def _existing(conn: sa.Connection, key: str, now: float, policy: ThrottlePolicy
              ) -> _Counter | None:
  """A key's counter if it has a row (locked for this transaction), else None.

  The client's row exists only once it has failed: the attempts of a crowd behind one
  address, none of them failed, never wait on one another for it.
  """
  row = conn.execute(sa.select(login_throttle.c.failures, login_throttle.c.next_at,
                               login_throttle.c.updated)
                     .where(login_throttle.c.key == key).with_for_update()).first()
  if row is None or row.updated < now - policy.reset_s:
    return None
  return _Counter(failures=row.failures, next_at=row.next_at)


def take_turn(conn: sa.Connection, db: database.Database, *, client: str, user_id: str,
              now: float, policy: ThrottlePolicy) -> Turn:
  """Counts one attempt as pending and returns when it may be checked.

  Runs in the caller's write transaction; rows are locked in one order (client, pair,
  account) in every transaction, so two attempts never wait on each other in a cycle.
  Every attempt that is not `throttled` must be settled with `settle`.
  """
  keys = client_key(client), pair_key(client, user_id), account_key(user_id)
  mine = _existing(conn, keys[0], now, policy)
  pair, account = (_counter(conn, db, key, now, policy) for key in keys[1:])
  if mine is None or mine.failures == 0:
    if pair.pending < policy.parallel:
      check_at = now
    else:  # many attempts at one account at once: they queue, delay_s apart
      check_at = max(now, pair.next_at)
      if check_at - now > policy.max_delay_s:
        return Turn(check_at=now, throttled=True, answer_at=now + policy.max_delay_s)
      pair.next_at = check_at + policy.delay_s
    answer_at = check_at + policy.delay(1)  # should it fail, the client's first failure
  else:
    own_turn = max(now, mine.next_at)
    if own_turn - now > policy.max_delay_s:
      return Turn(check_at=now, throttled=True, answer_at=now + policy.max_delay_s)
    # The account's delay weighs only on clients that have failed.
    check_at = own_turn + min(max(0.0, account.next_at - own_turn), policy.max_delay_s)
    # The next attempt of this client waits for this one's answer, as if it failed:
    # attempts sent in parallel cannot skip a delay.
    answer_at = check_at + policy.delay(mine.failures + 1)
    mine.next_at = answer_at
    _store(conn, keys[0], mine, now)
  pair.pending += 1
  account.pending += 1
  account.next_at = max(account.next_at,
                        check_at + policy.delay(account.failures + account.pending))
  _store(conn, keys[1], pair, now)
  _store(conn, keys[2], account, now)
  return Turn(check_at=check_at, throttled=False, answer_at=answer_at)


def settle(conn: sa.Connection, db: database.Database, *, client: str, user_id: str,
           turn: Turn, succeeded: bool, now: float, policy: ThrottlePolicy) -> float:
  """Records a checked attempt's outcome: a failure in a row, or a success that clears
  the account's counter and the client's failures.

  Returns when to answer a failure: the client's next turn, so that a person who retries
  after the answer is checked at once.
  """
  keys = client_key(client), pair_key(client, user_id), account_key(user_id)
  if succeeded:
    conn.execute(login_throttle.delete().where(login_throttle.c.key == keys[0]))
  else:
    mine = _counter(conn, db, keys[0], now, policy)
  pair, account = (_counter(conn, db, key, now, policy) for key in keys[1:])
  pair.pending -= 1
  if pair.pending <= 0:
    conn.execute(login_throttle.delete().where(login_throttle.c.key == keys[1]))
  else:
    _store(conn, keys[1], pair, now)
  if succeeded:
    conn.execute(login_throttle.delete().where(login_throttle.c.key == keys[2]))
    return now
  mine.failures += 1
  mine.next_at = max(mine.next_at, turn.answer_at)
  account.pending -= 1
  account.failures += 1
  _store(conn, keys[0], mine, now)
  _store(conn, keys[2], account, now)
  conn.execute(login_throttle.delete().where(login_throttle.c.updated < now - policy.reset_s))
  return mine.next_at


def clear_account(conn: sa.Connection, *, user_id: str) -> None:
  """A new password: the account's counter goes (clients keep their own)."""
  conn.execute(login_throttle.delete().where(login_throttle.c.key == account_key(user_id)))
