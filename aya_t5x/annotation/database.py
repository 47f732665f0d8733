"""The annotation database: its tables, the engine for SQLite or PostgreSQL, and migrations.

One schema through SQLAlchemy Core serves both stores. SQLite (a file path, or
`sqlite:///path`) is the embedded default; `postgresql://user:pass@host/db` (psycopg 3)
lets several app processes on several machines serve one database. Writes are short
transactions: on SQLite each takes the write lock at its start (`BEGIN IMMEDIATE`, WAL
mode, a busy timeout), so concurrent writers queue instead of failing; on PostgreSQL
unique constraints and `ON CONFLICT` upserts keep racing writers from doubling a row.

Schema versions: 1 is the first, SQLite-only app (no accounts); 2 adds accounts,
sessions, invitations and the audit table, and a hash key for seed pairs (a unique
index on whole texts is too wide for PostgreSQL); 3 adds the login throttling counters
(per account and per client, replacing the account lock) and `accounts.user_key`, the
case-folded user id that makes ids unique regardless of case. A version-1 file migrates
in place on first open: every user id found in it becomes an account without a password,
which its owner sets through an invitation (`aya-t5x annotate invite --user ID`). From
version 2, accounts whose ids differ only in case keep working (each logs in with its
exact id); the oldest holds the case-folded key, and no new id may fold to a taken one.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

SCHEMA_VERSION = 3
ROLES = ("contributor", "lead", "admin")

metadata = sa.MetaData()

schema_info = sa.Table("schema_info", metadata, sa.Column("version", sa.Integer, nullable=False))

contributors = sa.Table(
    "contributors", metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("first_seen", sa.Text, nullable=False),
    sa.Column("last_seen", sa.Text, nullable=False))

items = sa.Table(
    "items", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("targets", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("items.id")),
    sa.Column("prompt_distance", sa.Integer),
    sa.Column("completion_distance", sa.Integer),
    sa.Column("source", sa.Text),
    sa.Column("created", sa.Text, nullable=False),
    # sha256 of (language, inputs, targets) for seeds: one seed per pair and language.
    sa.Column("seed_key", sa.Text, unique=True),
    # How often the item was re-annotated, voted on and rated, kept by the writes that add
    # one: the queues serve the least handled first by walking an index on these, instead
    # of counting every item's feedback on every page.
    sa.Column("reannotation_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("vote_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rating_count", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint("kind IN ('seed', 'original', 'reannotation')", name="item_kind"),
    sa.CheckConstraint("(kind = 'reannotation') = (parent_id IS NOT NULL)", name="item_parent"),
    sa.CheckConstraint("(kind = 'seed') = (user_id IS NULL)", name="item_author"),
    sa.Index("items_by_language", "language", "kind"),
    sa.Index("reannotation_queue", "language", "reannotation_count", "id"),
    sa.Index("vote_queue", "language", "vote_count", "id"),
    sa.Index("rating_queue", "language", "rating_count", "id"),
    sa.Index("items_by_parent", "parent_id"),
    sa.Index("items_by_user", "user_id"),
    sa.Index("one_reannotation_per_contributor", "parent_id", "user_id", unique=True,
             sqlite_where=sa.text("kind = 'reannotation'"),
             postgresql_where=sa.text("kind = 'reannotation'")))

votes = sa.Table(
    "votes", metadata,
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("up", sa.Integer, nullable=False),
    sa.Column("created", sa.Text, nullable=False),
    sa.CheckConstraint("up IN (0, 1)", name="vote_up"),
    sa.Index("votes_by_user", "user_id"))

ratings = sa.Table(
    "ratings", metadata,
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("created", sa.Text, nullable=False),
    sa.CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
    sa.Index("ratings_by_user", "user_id"))

skips = sa.Table(
    "skips", metadata,
    sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), primary_key=True),
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("queue", sa.Text, primary_key=True))

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    # NULL until the owner sets one through an invitation (migrated accounts start so).
    sa.Column("password_hash", sa.Text),
    sa.Column("created", sa.Text, nullable=False),
    # The case-folded user id (`user_key`): unique, so `Amina` cannot join beside `amina`.
    # An account that a version-2 database held beside a case-twin keeps `key#user_id`.
    sa.Column("user_key", sa.Text),
    sa.CheckConstraint("role IN ('contributor', 'lead', 'admin')", name="account_role"),
    sa.Index("accounts_by_key", "user_key", unique=True))

# Failed logins in a row and attempts in flight per throttling key (`client:ADDRESS`,
# `account:KEY` with KEY the typed user id case-folded, whether or not such an account
# exists, and `pair:ADDRESS|KEY`): see `throttle`.
login_throttle = sa.Table(
    "login_throttle", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),  # settled failures in a row
    sa.Column("pending", sa.Integer, nullable=False),  # attempts being checked now
    # The earliest time the next attempt under this key is checked.
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Index("login_throttle_by_age", "updated"))

sessions = sa.Table(
    "sessions", metadata,
    # sha256 of the cookie's token: a copy of the table does not hand out live sessions.
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("user_id", sa.Text, sa.ForeignKey("accounts.user_id"), nullable=False),
    sa.Column("csrf", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Index("sessions_by_user", "user_id"))

invitations = sa.Table(
    "invitations", metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    # Set for an invitation to set the password of an existing account.
    sa.Column("user_id", sa.Text),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
    sa.Column("used_at", sa.Float),
    sa.Column("used_by", sa.Text))

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("audit_by_user", "user_id", "at"))


def seed_key(language: str, inputs: str, targets: str) -> str:
  """The unique key of a seed pair (length-prefixed, so no two triples share one)."""
  digest = hashlib.sha256()
  for part in (language, inputs, targets):
    data = part.encode("utf-8")
    digest.update(len(data).to_bytes(8, "big") + data)
  return digest.hexdigest()


def database_url(target: str | os.PathLike) -> sa.URL:
  """The SQLAlchemy URL of a --db value: a file path, `sqlite:///...` or `postgresql://...`."""
  text = os.fspath(target)
  if "://" not in text:
    path = Path(text)
    if text == ":memory:" or not path.parent.is_dir():
      raise FileNotFoundError(f"annotation database {text}: give a file in an existing "
                              "folder, or a postgresql:// URL")
    return sa.URL.create("sqlite", database=str(path))
  try:
    url = sa.make_url(text)
  except sa.exc.ArgumentError as e:
    raise ValueError(f"--db {text!r}: not a database URL ({e})") from None
  if url.get_backend_name() == "postgresql":
    return url.set(drivername="postgresql+psycopg")  # psycopg 3, whatever the URL named
  if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
    return database_url(url.database)
  raise ValueError(f"--db {url.render_as_string()}: use a SQLite file path or a "
                   "postgresql://user:password@host/database URL")


class Database:
  """An engine on one annotation database, its schema created or migrated on open.

  Args:
    target: a SQLite file path or URL, or a postgresql:// URL.
    busy_timeout_s: how long a SQLite write waits for another writer's lock.
    pool_size: connections kept open (each app process has its own pool).
  """

  def __init__(self, target: str | os.PathLike, *, busy_timeout_s: float = 30.0,
               pool_size: int = 10):
    self.url = database_url(target)
    self.is_sqlite = self.url.get_backend_name() == "sqlite"
    self.name = self.url.database if self.is_sqlite else self.url.render_as_string()
    self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
    if self.is_sqlite:
      self.engine = sa.create_engine(self.url, pool_size=pool_size, max_overflow=2 * pool_size,
                                     pool_timeout=busy_timeout_s)
      _sqlite_transactions(self.engine, busy_timeout_s)
    else:
      try:
        import psycopg  # noqa: F401 (the driver SQLAlchemy loads for postgresql+psycopg)
      except ModuleNotFoundError:
        raise ValueError(f"--db {self.name}: PostgreSQL needs psycopg 3: pip install "
                         "-c requirements/constraints.txt 'aya_t5x[postgres]'") from None
      self.engine = sa.create_engine(self.url, pool_size=pool_size, max_overflow=2 * pool_size,
                                     pool_pre_ping=True)
    try:
      self._prepare()
    except sa.exc.DatabaseError as e:
      self.engine.dispose()
      raise ValueError(f"{self.name}: not an annotation database, or not reachable "
                       f"({e.orig or e})") from None
    except BaseException:
      self.engine.dispose()
      raise

  def close(self) -> None:
    self.engine.dispose()

  def __enter__(self) -> Database:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  @contextlib.contextmanager
  def write(self) -> Iterator[sa.Connection]:
    """One write transaction (on SQLite it holds the write lock from its start)."""
    # SQLite: this process's writers queue on a mutex, which wakes the next one at once;
    # SQLite's own busy handler (left for writers in other processes) polls with sleeps
    # of up to 100 ms, which under many writers costs seconds.
    with self._write_lock, self.engine.connect().execution_options(aya_write=True) as conn, \
        conn.begin():
      yield conn

  @contextlib.contextmanager
  def read(self) -> Iterator[sa.Connection]:
    """One read-only transaction (a consistent snapshot; no write lock)."""
    with self.engine.connect() as conn, conn.begin():
      yield conn

  def insert(self, table: sa.Table) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_nothing/update` on both stores."""
    return (sqlite if self.is_sqlite else postgresql).insert(table)

  # ------------------------------------------------------------------------ schema

  def _prepare(self) -> None:
    with self.write() as conn:
      if not self.is_sqlite:
        # Processes that open a new database together create it once, one after another.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7291547)"))
      names = set(sa.inspect(conn).get_table_names())
      if "schema_info" in names:
        version = conn.execute(sa.select(schema_info.c.version)).scalar_one()
      elif "items" in names:
        version = 1
      elif names - {"sqlite_sequence"}:
        raise ValueError(f"{self.name}: holds other tables ({', '.join(sorted(names))}), "
                         "not an annotation database; give a new file or database")
      else:
        version = 0
      if version > SCHEMA_VERSION:
        raise ValueError(f"{self.name}: schema version {version} is newer than this aya_t5x "
                         f"understands ({SCHEMA_VERSION}); upgrade aya_t5x")
      if version == SCHEMA_VERSION:
        return
      if version == 1:
        _migrate_from_1(conn)
      if version == 2:
        # Version 2's accounts had a hard lock (failed_logins, locked_until); those columns
        # stay, unused (their defaults fill them), as dropping columns needs a table copy.
        conn.exec_driver_sql("ALTER TABLE accounts ADD COLUMN user_key TEXT")
      metadata.create_all(conn, checkfirst=True)
      if version == 1:
        _accounts_for_existing_users(conn)
      if version in (1, 2):
        _assign_user_keys(conn)
        next(i for i in accounts.indexes if i.name == "accounts_by_key").create(
            conn, checkfirst=True)
      if version == 0 or version == 1:
        conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
      else:
        conn.execute(schema_info.update().values(version=SCHEMA_VERSION))


def _sqlite_transactions(engine: sa.Engine, busy_timeout_s: float) -> None:
  """SQLite: WAL, foreign keys, and writes that take the lock at BEGIN, not mid-way."""

  @sa.event.listens_for(engine, "connect")
  def _connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not the driver's
    dbapi_connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    dbapi_connection.execute("PRAGMA foreign_keys = ON")
    dbapi_connection.execute("PRAGMA journal_mode = WAL")

  @sa.event.listens_for(engine, "begin")
  def _begin(conn: sa.Connection) -> None:
    immediate = conn.get_execution_options().get("aya_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _migrate_from_1(conn: sa.Connection) -> None:
  """Version 1 (SQLite): the seed key column replaces the unique index on whole texts."""
  conn.exec_driver_sql("DROP INDEX IF EXISTS one_seed_per_pair")
  conn.exec_driver_sql("ALTER TABLE items ADD COLUMN seed_key TEXT")
  rows = conn.execute(sa.select(items.c.id, items.c.language, items.c.inputs, items.c.targets)
                      .where(items.c.kind == "seed")).all()
  for item_id, language, inputs, targets in rows:
    conn.execute(items.update().where(items.c.id == item_id)
                 .values(seed_key=seed_key(language, inputs, targets)))
  conn.exec_driver_sql("CREATE UNIQUE INDEX IF NOT EXISTS items_seed_key ON items (seed_key)")
  for column, table, key in (("reannotation_count", "items", "parent_id"),
                             ("vote_count", "votes", "item_id"),
                             ("rating_count", "ratings", "item_id")):
    conn.exec_driver_sql(f"ALTER TABLE items ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    conn.exec_driver_sql(f"UPDATE items SET {column} = (SELECT COUNT(*) FROM {table} AS t "
                         f"WHERE t.{key} = items.id)")
    queue = {"reannotation_count": "reannotation_queue", "vote_count": "vote_queue",
             "rating_count": "rating_queue"}[column]
    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {queue} ON items (language, {column}, id)")
  for name, table in (("items_by_user", "items"), ("votes_by_user", "votes"),
                      ("ratings_by_user", "ratings")):
    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} (user_id)")
  conn.exec_driver_sql("PRAGMA user_version = 2")


def _accounts_for_existing_users(conn: sa.Connection) -> None:
  """Every user id of a version-1 database becomes a contributor account, no password yet."""
  now = now_text()
  languages: dict[str, str] = {}
  for user_id, language in conn.execute(sa.select(items.c.user_id, items.c.language)
                                        .where(items.c.user_id.is_not(None))):
    languages.setdefault(user_id, language)
  for user_id, language in conn.execute(sa.select(contributors.c.user_id,
                                                  contributors.c.language)):
    languages[user_id] = language  # the language chosen at their last login
  for table in (votes, ratings):
    for user_id, language in conn.execute(
        sa.select(table.c.user_id, items.c.language).join(items, items.c.id == table.c.item_id)):
      languages.setdefault(user_id, language)
  for user_id, language in sorted(languages.items()):
    conn.execute(accounts.insert().values(user_id=user_id, language=language,
                                          role="contributor", password_hash=None, created=now))
  conn.execute(audit.insert().values(
      at=time.time(), user_id=None,
      action="migrate", detail=f"schema 1 -> 2: {len(languages)} accounts without passwords"))


def user_key(user_id: str) -> str:
  """The case-folded form of a user id, which must be unique among accounts."""
  return user_id.casefold()


def _assign_user_keys(conn: sa.Connection) -> None:
  """Migration: a key for every account without one, the oldest of case-twins first."""
  rows = conn.execute(sa.select(accounts.c.user_id).where(accounts.c.user_key.is_(None))
                      .order_by(accounts.c.created, accounts.c.user_id)).scalars().all()
  taken = set(conn.execute(sa.select(accounts.c.user_key)
                           .where(accounts.c.user_key.is_not(None))).scalars())
  twins = []
  for user_id in rows:
    key = user_key(user_id)
    if key in taken:  # '#' is no user id character, so this key matches no new sign-up
      twins.append(user_id)
      key = f"{key}#{user_id}"
    taken.add(key)
    conn.execute(accounts.update().where(accounts.c.user_id == user_id).values(user_key=key))
  if twins:
    conn.execute(audit.insert().values(
        at=time.time(), user_id=None, action="migrate",
        detail=f"schema 3: accounts that differ from an older one only in case, kept: "
               f"{', '.join(twins)}"))


def now_text() -> str:
  """The current UTC time as stored in text columns (ISO 8601, whole seconds)."""
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def log_event(conn: sa.Connection, user_id: str | None, action: str, detail: str = "") -> None:
  """One audit row in the caller's transaction: it commits or rolls back with the act."""
  conn.execute(audit.insert().values(at=time.time(), user_id=user_id, action=action,
                                     detail=detail))
