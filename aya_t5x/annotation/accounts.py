"""Accounts of the annotation platform: invitations, passwords, login throttling, sessions.

- People join through one-time invitations that an admin or a language lead issues
  (`aya-t5x annotate invite`, or the Invitations page): the link carries a random token,
  the database keeps only its sha256, and accepting it is one atomic update, so a link
  works once even when two people race to use it. An invitation may name an existing
  account: that is how accounts migrated from the password-less app (and people who
  forgot their password) set a new one.
- Passwords are hashed with scrypt (memory-hard, Python's standard library), each with
  its own salt and cost parameters stored beside it.
- Failed logins are slowed down (the app waits `delay_s` times the count of recent
  failures before answering) and after `max_failures` the account is locked for
  `lock_s`. An attempt is counted before its password is checked, so parallel guesses
  cannot slip past the limit. Unknown user ids cost the same time and say the same thing.
- Sessions live on the server (table `sessions`): the cookie holds a random token whose
  sha256 is the key, with an absolute expiry; logout deletes the row, so a copied cookie
  is dead after it. Each session has its own CSRF token.
- Every account event goes into the audit table (`database.log_event`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time

import sqlalchemy as sa

from aya_t5x.annotation import database, forms
from aya_t5x.annotation.database import ROLES, accounts, invitations, sessions

# scrypt cost: 2^14 x 8 x 128 bytes = 16 MiB of memory per hash, about 0.1 s of a core
# (the parameters Django's scrypt hasher uses). A login costs one hash, so this also sets
# how many logins a second a core can take (about 10).
SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024


class AccountError(ValueError):
  """A refused account action, with the text to show the person."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoginPolicy:
  """How logins are throttled and how long sessions and invitations last.

  Attributes:
    max_failures: wrong passwords in a row before the account is locked.
    lock_s: how long a locked account refuses every login.
    delay_s: the wait before answering a failed login, per failure in the current row.
    max_delay_s: the longest such wait.
    session_s: how long a session lasts from login (absolute, not renewed by use).
    invitation_s: how long an invitation link stays valid.
    scrypt_n: scrypt's cost (memory and time) for new password hashes; each hash keeps
      its own, so raising it later leaves existing passwords working.
  """

  max_failures: int = 5
  lock_s: float = 15 * 60
  delay_s: float = 0.5
  max_delay_s: float = 4.0
  session_s: float = 12 * 3600
  invitation_s: float = 14 * 24 * 3600
  scrypt_n: int = SCRYPT_N

  def __post_init__(self):
    if self.scrypt_n < 2**10 or self.scrypt_n & (self.scrypt_n - 1):
      raise ValueError(f"scrypt_n must be a power of two of at least 1024, got {self.scrypt_n}")
    if self.max_failures < 1:
      raise ValueError(f"max_failures must be at least 1, got {self.max_failures}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Session:
  """A logged-in person: who, their language and role, and the session's CSRF token."""

  user_id: str
  language: str
  role: str
  csrf: str
  expires: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class Invitation:
  """A valid (unused, unexpired) invitation."""

  language: str
  role: str
  user_id: str | None
  expires: float


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoginResult:
  """A login's outcome: a session token on success, else the wait and the message."""

  token: str | None = None
  delay_s: float = 0.0
  error: str | None = None


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
  """`scrypt$n$r$p$salt$hash` (hex) of a password, with a fresh random salt."""
  salt = secrets.token_bytes(16)
  digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=_SCRYPT_R,
                          p=_SCRYPT_P, maxmem=256 * n * _SCRYPT_R + (1 << 20), dklen=32)
  return f"scrypt${n}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None, *, n: int = SCRYPT_N) -> bool:
  """Whether `password` matches a `hash_password` value (None matches nothing).

  For None it does the work of a hash of cost `n` anyway, so that the time taken does
  not tell whether an account exists.
  """
  if stored is None:
    hash_password(password, n=n)
    return False
  scheme, n, r, p, salt, digest = stored.split("$")
  if scheme != "scrypt":
    raise ValueError(f"unknown password hash scheme {scheme!r}")
  n, r, p = int(n), int(r), int(p)
  candidate = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=n, r=r, p=p,
                             maxmem=256 * n * r + (1 << 20), dklen=len(digest) // 2)
  return hmac.compare_digest(candidate.hex(), digest)


def check_password(password: str, confirm: str) -> str:
  """The password, or AccountError saying what a password needs."""
  if password != confirm:
    raise AccountError("the two passwords differ; type the same password twice")
  if len(password) < MIN_PASSWORD_CHARS:
    raise AccountError(f"use a password of at least {MIN_PASSWORD_CHARS} characters "
                       "(a few words are easy to remember)")
  if len(password) > MAX_PASSWORD_CHARS:
    raise AccountError(f"use a password of at most {MAX_PASSWORD_CHARS} characters")
  return password


def _digest(token: str) -> str:
  return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Accounts:
  """Account, invitation and session operations on one `Database`."""

  def __init__(self, db: database.Database, policy: LoginPolicy = LoginPolicy()):
    self.db = db
    self.policy = policy

  # ------------------------------------------------------------------------ invitations

  def create_invitations(self, *, created_by: str, language: str, count: int = 1,
                         role: str = "contributor", user_id: str | None = None) -> list[str]:
    """Issues `count` invitations; returns their tokens (shown once, stored hashed).

    With `user_id`, one invitation to set that existing account's password.
    """
    if role not in ROLES:
      raise AccountError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not 1 <= count <= 10_000:
      raise AccountError(f"--count {count}: issue 1 to 10,000 invitations at a time")
    if user_id is not None and count != 1:
      raise AccountError("an invitation for an existing account is one link (--count 1)")
    now = time.time()
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    with self.db.write() as conn:
      if user_id is not None:
        account = conn.execute(sa.select(accounts.c.language, accounts.c.role)
                               .where(accounts.c.user_id == user_id)).first()
        if account is None:
          raise AccountError(f"there is no account {user_id!r}")
        language, role = account
      conn.execute(invitations.insert(), [
          {"token_hash": _digest(t), "language": language, "role": role, "user_id": user_id,
           "created_by": created_by, "created": now,
           "expires": now + self.policy.invitation_s} for t in tokens])
      database.log_event(conn, created_by, "invite",
                         f"{count} {role} invitation(s) for {language}"
                         + (f" to account {user_id}" if user_id else ""))
    return tokens

  def invitation(self, token: str) -> Invitation | None:
    """The invitation of a link's token, or None when unknown, used or expired."""
    with self.db.read() as conn:
      row = conn.execute(sa.select(invitations.c.language, invitations.c.role,
                                   invitations.c.user_id, invitations.c.expires)
                         .where(invitations.c.token_hash == _digest(token),
                                invitations.c.used_at.is_(None),
                                invitations.c.expires > time.time())).first()
    return Invitation(**row._mapping) if row else None

  def accept_invitation(self, token: str, *, user_id: str, password: str) -> str:
    """Creates the account (or sets the invited account's password); returns the user id.

    The invitation is marked used in the same transaction, only if it still was unused,
    so a link makes one account however often or however fast it is sent.
    """
    # Hashed before the transaction starts: it takes a while.
    password_hash = hash_password(password, n=self.policy.scrypt_n)
    now = time.time()
    with self.db.write() as conn:
      row = conn.execute(
          invitations.update().where(invitations.c.token_hash == _digest(token),
                                     invitations.c.used_at.is_(None),
                                     invitations.c.expires > now)
          .values(used_at=now, used_by=user_id)
          .returning(invitations.c.language, invitations.c.role, invitations.c.user_id)
      ).first()
      if row is None:
        raise AccountError("this invitation link was used already or has expired; ask "
                           "your language lead for a new one")
      language, role, invited_user = row
      if invited_user is not None:
        user_id = invited_user
        conn.execute(accounts.update().where(accounts.c.user_id == user_id).values(
            password_hash=password_hash, failed_logins=0, locked_until=0))
        conn.execute(sessions.delete().where(sessions.c.user_id == user_id))
        database.log_event(conn, user_id, "set-password", "through an invitation")
        return user_id
      user_id = forms.check_user_id(user_id)
      inserted = conn.execute(
          self.db.insert(accounts).values(
              user_id=user_id, language=language, role=role, password_hash=password_hash,
              created=database.now_text(), failed_logins=0, locked_until=0)
          .on_conflict_do_nothing().returning(accounts.c.user_id)).first()
      if not inserted:
        raise AccountError(f"the user id {user_id!r} is taken; choose another")
      database.log_event(conn, user_id, "signup", f"{role} for {language}")
    return user_id

  # ------------------------------------------------------------------------ login

  def login(self, user_id: str, password: str) -> LoginResult:
    """Checks a password under the throttling policy; a session token on success."""
    policy = self.policy
    now = time.time()
    refused = "wrong user id or password"
    with self.db.write() as conn:
      # Count the attempt before checking it: parallel guesses each take a number.
      row = conn.execute(
          accounts.update().where(accounts.c.user_id == user_id,
                                  accounts.c.locked_until <= now)
          .values(failed_logins=accounts.c.failed_logins + 1)
          .returning(accounts.c.failed_logins, accounts.c.password_hash)).first()
      locked = row is None and conn.execute(
          sa.select(accounts.c.locked_until).where(accounts.c.user_id == user_id)).scalar()
      if locked:
        database.log_event(conn, user_id, "login-locked")
    if locked:
      minutes = max(1, round((locked - now) / 60))
      return LoginResult(error=f"this account is locked after {policy.max_failures} wrong "
                               f"passwords; try again in {minutes} minute(s), or ask your "
                               "language lead for a password invitation")
    if row is None:  # no such account: the same work and the same answer as a wrong password
      verify_password(password, None, n=policy.scrypt_n)
      return LoginResult(delay_s=policy.delay_s, error=refused)
    attempt, stored = row
    if stored is None:
      with self.db.write() as conn:
        conn.execute(accounts.update().where(accounts.c.user_id == user_id)
                     .values(failed_logins=0))
      return LoginResult(error="this account has no password yet: open the invitation link "
                               "your language lead sends you to set one")
    if attempt <= policy.max_failures and verify_password(password, stored):
      token = secrets.token_urlsafe(32)
      with self.db.write() as conn:
        conn.execute(accounts.update().where(accounts.c.user_id == user_id)
                     .values(failed_logins=0))
        conn.execute(sessions.delete().where(sessions.c.expires < now))
        conn.execute(sessions.insert().values(
            token_hash=_digest(token), user_id=user_id, csrf=secrets.token_urlsafe(32),
            created=now, expires=now + policy.session_s))
        database.log_event(conn, user_id, "login")
      return LoginResult(token=token)
    with self.db.write() as conn:
      if attempt >= policy.max_failures:
        conn.execute(accounts.update().where(accounts.c.user_id == user_id)
                     .values(failed_logins=0, locked_until=now + policy.lock_s))
        database.log_event(conn, user_id, "lock", f"after {attempt} wrong passwords")
      else:
        database.log_event(conn, user_id, "login-failed", f"attempt {attempt}")
    return LoginResult(delay_s=min(policy.delay_s * attempt, policy.max_delay_s),
                       error=refused)

  def session(self, token: str | None) -> Session | None:
    """The live session of a cookie's token, or None (unknown, expired or logged out)."""
    if not token or len(token) > 128:
      return None
    with self.db.read() as conn:
      row = conn.execute(
          sa.select(accounts.c.user_id, accounts.c.language, accounts.c.role,
                    sessions.c.csrf, sessions.c.expires)
          .join(accounts, accounts.c.user_id == sessions.c.user_id)
          .where(sessions.c.token_hash == _digest(token),
                 sessions.c.expires > time.time())).first()
    return Session(**row._mapping) if row else None

  def end_session(self, token: str) -> None:
    """Logout: the session row goes, so the cookie (or any copy of it) is dead."""
    with self.db.write() as conn:
      user_id = conn.execute(sessions.delete().where(sessions.c.token_hash == _digest(token))
                             .returning(sessions.c.user_id)).scalar()
      if user_id:
        database.log_event(conn, user_id, "logout")

  # ------------------------------------------------------------------------ reads

  def audit_log(self, user_id: str | None = None) -> list[tuple[float, str | None, str, str]]:
    """(time, user id, action, detail) rows, oldest first (of one person, or all)."""
    query = sa.select(database.audit.c.at, database.audit.c.user_id, database.audit.c.action,
                      database.audit.c.detail).order_by(database.audit.c.id)
    if user_id is not None:
      query = query.where(database.audit.c.user_id == user_id)
    with self.db.read() as conn:
      return [tuple(r) for r in conn.execute(query)]

  def role_of(self, user_id: str) -> str | None:
    with self.db.read() as conn:
      return conn.execute(sa.select(accounts.c.role)
                          .where(accounts.c.user_id == user_id)).scalar()

