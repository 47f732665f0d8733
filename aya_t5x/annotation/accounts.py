"""Accounts of the annotation platform: invitations, passwords, login throttling, sessions.

- People join through one-time invitations that an admin or a language lead issues
  (`aya-t5x annotate invite`, or the Invitations page): the link carries a random token,
  the database keeps only its sha256, and accepting it is one atomic update, so a link
  works once even when two people race to use it. An invitation may name an existing
  account: that is how accounts migrated from the password-less app (and people who
  forgot their password) set a new one.
- Passwords are hashed with scrypt (memory-hard, Python's standard library), each with
  its own salt and cost parameters stored beside it.
- New passwords: at least 10 characters, not equal to or containing the user id, and
  not easy to guess by zxcvbn's estimate (its lists of common passwords, words, names and
  keyboard patterns).
- Failed logins are slowed down per client and per account with growing delays
  (`throttle`), never by locking an account: a client that has not failed is checked
  at once (up to 2 attempts at one account in flight). Every failure (unknown id,
  wrong password, throttled) gets the same answer after the same work (one scrypt hash,
  of a dummy when there is nothing to check).
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

from aya_t5x.annotation import database, forms, throttle
from aya_t5x.annotation.database import ROLES, accounts, invitations, sessions
from aya_t5x.annotation.throttle import ThrottlePolicy

# scrypt cost: 2^14 x 8 x 128 bytes = 16 MiB of memory per hash, about 0.1 s of a core
# (the parameters Django's scrypt hasher uses). A login costs one hash, so this also sets
# how many logins a second a core can take (about 10).
SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024
# zxcvbn's score (0-4): 3 is, in its own words, "safely unguessable: moderate protection
# from offline slow-hash scenario" (10^8 to 10^10 guesses). Only the first 64 characters
# are scored: zxcvbn's time grows fast with length, and a password is at least as hard
# to guess as its start.
MIN_PASSWORD_SCORE = 3
_SCORED_CHARS = 64
LOGIN_REFUSED = "wrong user id or password"


class AccountError(ValueError):
  """A refused account action, with the text to show the person."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoginPolicy:
  """How logins are throttled and how long sessions and invitations last.

  Attributes:
    throttle: the growing delays of failed logins, per client and per account.
    session_s: how long a session lasts from login (absolute, not renewed by use).
    invitation_s: how long an invitation link stays valid.
    scrypt_n: scrypt's cost (memory and time) for new password hashes; each hash keeps
      its own, so raising it later leaves existing passwords working.
  """

  throttle: ThrottlePolicy = dataclasses.field(default_factory=ThrottlePolicy)
  session_s: float = 12 * 3600
  invitation_s: float = 14 * 24 * 3600
  scrypt_n: int = SCRYPT_N

  def __post_init__(self):
    if self.scrypt_n < 2**10 or self.scrypt_n & (self.scrypt_n - 1):
      raise ValueError(f"scrypt_n must be a power of two of at least 1024, got {self.scrypt_n}")


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
class LoginAttempt:
  """A counted login attempt waiting for its turn (`turn.check_at`) to be checked."""

  user_id: str
  client: str
  turn: throttle.Turn
  password_hash: str | None  # None: no such account, or no password yet


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoginResult:
  """A login's outcome: a session token on success, else the message and when to answer.

  `answer_at` (time.time()) is when a failure is to be answered: the client's next turn,
  so that a person retrying after the answer is never throttled.
  """

  token: str | None = None
  error: str | None = None
  answer_at: float = 0.0

  @property
  def delay_s(self) -> float:
    return max(0.0, self.answer_at - time.time())


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


def check_password(password: str, confirm: str, *, user_id: str) -> str:
  """The password, or AccountError saying what a password needs.

  Refused: a mismatched confirmation, under 10 or over 1,024 characters, equal to or
  containing the user id (in any case), or easy to guess by zxcvbn's estimate.
  """
  import zxcvbn

  if password != confirm:
    raise AccountError("the two passwords differ; type the same password twice")
  if len(password) < MIN_PASSWORD_CHARS:
    raise AccountError(f"use a password of at least {MIN_PASSWORD_CHARS} characters "
                       "(a few words are easy to remember)")
  if len(password) > MAX_PASSWORD_CHARS:
    raise AccountError(f"use a password of at most {MAX_PASSWORD_CHARS} characters")
  if user_id and database.user_key(user_id) in database.user_key(password):
    raise AccountError("the password contains your user id; choose one without it")
  estimate = zxcvbn.zxcvbn(password[:_SCORED_CHARS], user_inputs=[user_id] if user_id else [])
  if estimate["score"] < MIN_PASSWORD_SCORE:
    why = estimate["feedback"]["warning"] or "it follows a common pattern"
    raise AccountError(f"this password is easy to guess ({why.rstrip('.')}); a few "
                       "unrelated words make a strong one")
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
    so a link makes one account however often or however fast it is sent. A new user id
    must differ from every existing one in more than case. A password link also clears
    the account's login throttling.
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
        self._set_password(conn, invited_user, password_hash, "through an invitation")
        return invited_user
      user_id = forms.check_user_id(user_id)
      # Both unique keys (the id and its case-folded form) refuse a taken id, also a racing one.
      inserted = conn.execute(
          self.db.insert(accounts).values(
              user_id=user_id, user_key=database.user_key(user_id), language=language,
              role=role, password_hash=password_hash, created=database.now_text())
          .on_conflict_do_nothing().returning(accounts.c.user_id)).first()
      if not inserted:
        raise AccountError(f"the user id {user_id!r} is taken; choose another")
      database.log_event(conn, user_id, "signup", f"{role} for {language}")
    return user_id

  def password_link(self, *, created_by: str, creator_role: str, creator_language: str,
                    user_id: str) -> str:
    """A password link for an existing account, as the Invitations page issues them.

    An admin may issue one for any account; a lead for contributors of their language
    only. Any other id, existing or not, gets the same refusal.
    """
    with self.db.read() as conn:
      row = conn.execute(sa.select(accounts.c.role, accounts.c.language)
                         .where(accounts.c.user_id == user_id)).first()
    allowed = row is not None and (creator_role == "admin" or (
        creator_role == "lead" and tuple(row) == ("contributor", creator_language)))
    if not allowed:
      raise AccountError("no contributor account of that user id in your language" if
                         creator_role != "admin" else f"there is no account {user_id!r}")
    token, = self.create_invitations(created_by=created_by, language="", user_id=user_id)
    return token

  def _set_password(self, conn: sa.Connection, user_id: str, password_hash: str, how: str,
                    *, keep_session: str | None = None) -> None:
    """A new password: every session but `keep_session` ends and the throttling clears."""
    conn.execute(accounts.update().where(accounts.c.user_id == user_id)
                 .values(password_hash=password_hash))
    ended = sessions.delete().where(sessions.c.user_id == user_id)
    if keep_session is not None:
      ended = ended.where(sessions.c.token_hash != _digest(keep_session))
    conn.execute(ended)
    throttle.clear_account(conn, user_id=user_id)
    database.log_event(conn, user_id, "set-password", how)

  # ------------------------------------------------------------------------ login

  def begin_login(self, user_id: str, client: str) -> LoginAttempt:
    """Counts an attempt (before its password is checked) and gives it its turn."""
    # No account id is longer than 64 characters: a longer one is nobody, kept short
    # as the key it is counted under.
    user_id = user_id[:128]
    now = time.time()
    with self.db.write() as conn:
      turn = throttle.take_turn(conn, self.db, client=client, user_id=user_id, now=now,
                                policy=self.policy.throttle)
      # The id as typed, else the account it folds to (ids are unique regardless of case;
      # of a database's older case-twins, the exact id wins).
      row = (conn.execute(sa.select(accounts.c.user_id, accounts.c.password_hash)
                          .where(accounts.c.user_id == user_id)).first()
             or conn.execute(sa.select(accounts.c.user_id, accounts.c.password_hash)
                             .where(accounts.c.user_key == database.user_key(user_id))).first())
      if row is not None:
        user_id, stored = row
      else:
        stored = None
      if turn.throttled:
        database.log_event(conn, user_id, "login-throttled", f"client {client}")
    return LoginAttempt(user_id=user_id, client=client, turn=turn, password_hash=stored)

  def finish_login(self, attempt: LoginAttempt, password: str, *,
                   start_session: bool = True) -> LoginResult:
    """Checks the password of an attempt whose turn has come (one scrypt hash always).

    Unknown ids, accounts without a password and throttled attempts hash a dummy of the
    same cost and get the same answer as a wrong password.
    """
    if attempt.turn.throttled:  # not counted: the same work and answer, nothing else
      verify_password(password, None, n=self.policy.scrypt_n)
      return LoginResult(error=LOGIN_REFUSED, answer_at=attempt.turn.answer_at)
    succeeded = False
    try:
      succeeded = verify_password(password, attempt.password_hash, n=self.policy.scrypt_n)
    finally:  # settled even if the check fails with an error: no attempt stays pending
      now = time.time()
      token = secrets.token_urlsafe(32)
      with self.db.write() as conn:
        answer_at = throttle.settle(conn, self.db, client=attempt.client,
                                    user_id=attempt.user_id, turn=attempt.turn,
                                    succeeded=succeeded, now=now, policy=self.policy.throttle)
        if not succeeded:
          database.log_event(conn, attempt.user_id, "login-failed", f"client {attempt.client}")
        elif start_session:
          conn.execute(sessions.delete().where(sessions.c.expires < now))
          conn.execute(sessions.insert().values(
              token_hash=_digest(token), user_id=attempt.user_id,
              csrf=secrets.token_urlsafe(32), created=now, expires=now + self.policy.session_s))
          database.log_event(conn, attempt.user_id, "login", f"client {attempt.client}")
    if not succeeded:
      return LoginResult(error=LOGIN_REFUSED, answer_at=answer_at)
    return LoginResult(token=token if start_session else None)

  def login(self, user_id: str, password: str, client: str = "local") -> LoginResult:
    """`begin_login`, a sleep until its turn, `finish_login` (for callers without a loop)."""
    attempt = self.begin_login(user_id, client)
    time.sleep(max(0.0, attempt.turn.check_at - time.time()))
    return self.finish_login(attempt, password)

  def set_password(self, user_id: str, password: str, *, keep_session: str) -> None:
    """A new password from the password page (after `finish_login` checked the current
    one): other sessions end, the one making the change goes on."""
    password_hash = hash_password(password, n=self.policy.scrypt_n)
    with self.db.write() as conn:
      self._set_password(conn, user_id, password_hash, "on the password page",
                         keep_session=keep_session)

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

