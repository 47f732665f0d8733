"""SQLite storage of the annotation platform: contributions, feedback and per-language queues.

One database file holds everything (SQLite by default; nothing to run beside the app):

- `items`: prompt/completion pairs. `seed` pairs are imported for re-annotation
  (`aya-t5x annotate import`); `original` pairs are written by a contributor;
  `reannotation` pairs edit a seed or an original (`parent_id`) and carry the character
  edit distances the server computed when they were saved.
- `votes` (thumbs up or down, one per contributor and item, changeable), `ratings` (1-5 on
  re-annotations, one per contributor and item) and `skips` (what a contributor passed
  over in a queue, so that it is not served again).
- `contributors`: who has logged in, and the language they last chose.

Many contributors write at once: the database runs in WAL mode (readers never block the
writer), every write is one `BEGIN IMMEDIATE` transaction that takes the write lock up
front (no deadlock between two upgrading readers), and a busy timeout makes a writer
wait for the lock instead of failing. Each thread or process opens its own `Store`
(sqlite3 connections are not shared between threads). The default `synchronous=FULL`
makes every committed contribution durable before the page says it is saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from aya_t5x.annotation import edit_distance

KINDS = ("seed", "original", "reannotation")
QUEUES = ("reannotate", "vote", "rate")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contributors (
  user_id TEXT PRIMARY KEY,
  language TEXT NOT NULL,
  first_seen TEXT NOT NULL,
  last_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('seed', 'original', 'reannotation')),
  language TEXT NOT NULL,
  inputs TEXT NOT NULL,
  targets TEXT NOT NULL,
  user_id TEXT,
  parent_id INTEGER REFERENCES items(id),
  prompt_distance INTEGER,
  completion_distance INTEGER,
  source TEXT,
  created TEXT NOT NULL,
  CHECK ((kind = 'reannotation') = (parent_id IS NOT NULL)),
  CHECK ((kind = 'seed') = (user_id IS NULL))
);
CREATE INDEX IF NOT EXISTS items_by_language ON items (language, kind);
CREATE INDEX IF NOT EXISTS items_by_parent ON items (parent_id);
CREATE UNIQUE INDEX IF NOT EXISTS one_reannotation_per_contributor
  ON items (parent_id, user_id) WHERE kind = 'reannotation';
CREATE UNIQUE INDEX IF NOT EXISTS one_seed_per_pair
  ON items (language, inputs, targets) WHERE kind = 'seed';
CREATE TABLE IF NOT EXISTS votes (
  item_id INTEGER NOT NULL REFERENCES items(id),
  user_id TEXT NOT NULL,
  up INTEGER NOT NULL CHECK (up IN (0, 1)),
  created TEXT NOT NULL,
  PRIMARY KEY (item_id, user_id)
);
CREATE TABLE IF NOT EXISTS ratings (
  item_id INTEGER NOT NULL REFERENCES items(id),
  user_id TEXT NOT NULL,
  rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
  created TEXT NOT NULL,
  PRIMARY KEY (item_id, user_id)
);
CREATE TABLE IF NOT EXISTS skips (
  item_id INTEGER NOT NULL REFERENCES items(id),
  user_id TEXT NOT NULL,
  queue TEXT NOT NULL,
  PRIMARY KEY (item_id, user_id, queue)
);
"""


class StoreError(ValueError):
  """A contribution the rules refuse (own item, wrong language, rated twice, ...)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Item:
  """One prompt/completion pair of the `items` table."""

  id: int
  kind: str
  language: str
  inputs: str
  targets: str
  user_id: str | None
  parent_id: int | None
  prompt_distance: int | None
  completion_distance: int | None
  source: str | None
  created: str

  @property
  def distance(self) -> int | None:
    """The summed prompt and completion edit distance of a re-annotation."""
    if self.prompt_distance is None or self.completion_distance is None:
      return None
    return self.prompt_distance + self.completion_distance


@dataclasses.dataclass(frozen=True, kw_only=True)
class Vote:
  item_id: int
  user_id: str
  up: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rating:
  item_id: int
  user_id: str
  rating: int


def _now() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


_ITEM_COLUMNS = ("id, kind, language, inputs, targets, user_id, parent_id, prompt_distance, "
                 "completion_distance, source, created")


def _item(row: tuple) -> Item:
  return Item(**dict(zip([c.strip() for c in _ITEM_COLUMNS.split(",")], row, strict=True)))


class Store:
  """One connection to an annotation database (created on first use).

  Args:
    path: the database file. Its folder must exist; keep it on a local disk (SQLite's
      WAL mode needs shared memory, which network file systems do not give).
    busy_timeout_s: how long a write waits for another writer's lock before failing.
  """

  def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 30.0):
    self.path = Path(path)
    if str(path) == ":memory:" or not self.path.parent.is_dir():
      raise FileNotFoundError(f"annotation database {path}: give a file in an existing "
                              "folder (the server opens one connection per request)")
    self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None)
    try:
      self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
      self._db.execute("PRAGMA foreign_keys = ON")
      version = self._db.execute("PRAGMA user_version").fetchone()[0]
      if version > SCHEMA_VERSION:
        raise ValueError(f"{self.path}: schema version {version} is newer than this "
                         f"aya_t5x understands ({SCHEMA_VERSION}); upgrade aya_t5x")
      if version < SCHEMA_VERSION:
        self._create_schema()
    except sqlite3.DatabaseError as e:
      self._db.close()
      raise ValueError(f"{self.path}: not an annotation database ({e})") from None
    except BaseException:
      self._db.close()
      raise

  def _create_schema(self) -> None:
    # WAL is a property of the file: set once, every later connection uses it.
    self._db.execute("PRAGMA journal_mode = WAL")
    with self._write() as db:
      for statement in _SCHEMA.split(";"):
        if statement.strip():
          db.execute(statement)
      db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

  def close(self) -> None:
    self._db.close()

  def __enter__(self) -> Store:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  @contextlib.contextmanager
  def _write(self) -> Iterator[sqlite3.Connection]:
    """One write transaction holding the write lock from its start."""
    self._db.execute("BEGIN IMMEDIATE")
    try:
      yield self._db
    except BaseException:
      self._db.execute("ROLLBACK")
      raise
    self._db.execute("COMMIT")

  # --------------------------------------------------------------------------- contributions

  def touch_contributor(self, user_id: str, language: str) -> None:
    """Records a login (and the language chosen at it)."""
    now = _now()
    with self._write() as db:
      db.execute("INSERT INTO contributors (user_id, language, first_seen, last_seen) "
                 "VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                 "language = excluded.language, last_seen = excluded.last_seen",
                 (user_id, language, now, now))

  def add_original(self, *, user_id: str, language: str, inputs: str, targets: str) -> Item:
    """Saves a pair a contributor wrote."""
    with self._write() as db:
      cursor = db.execute(
          "INSERT INTO items (kind, language, inputs, targets, user_id, created) "
          "VALUES ('original', ?, ?, ?, ?, ?)", (language, inputs, targets, user_id, _now()))
      return self._get(cursor.lastrowid)

  def add_reannotation(self, *, user_id: str, language: str, parent_id: int, inputs: str,
                       targets: str) -> Item:
    """Saves an edit of a seed or original pair, with its edit distances computed here.

    Raises:
      StoreError: the parent is missing, a re-annotation itself, in another language or
        the contributor's own, or this contributor re-annotated it already.
    """
    with self._write() as db:
      parent = self._check_target(parent_id, user_id, language, "reannotate",
                                  kinds=("seed", "original"))
      prompt_d, completion_d = edit_distance.pair_distance(
          (parent.inputs, parent.targets), (inputs, targets))
      try:
        cursor = db.execute(
            "INSERT INTO items (kind, language, inputs, targets, user_id, parent_id, "
            "prompt_distance, completion_distance, created) "
            "VALUES ('reannotation', ?, ?, ?, ?, ?, ?, ?, ?)",
            (parent.language, inputs, targets, user_id, parent_id, prompt_d, completion_d,
             _now()))
      except sqlite3.IntegrityError:
        raise StoreError(f"you re-annotated item {parent_id} already") from None
      return self._get(cursor.lastrowid)

  def add_seeds(self, seeds: Iterable[tuple[str, str, str, str]]
                ) -> tuple[dict[str, int], int]:
    """Adds (language, inputs, targets, source) pairs to the re-annotation queues.

    Returns ({language: pairs added}, duplicates): a pair already seeded in its language
    is not added twice. All seeds go in one transaction, so a failed import adds nothing.
    """
    added: dict[str, int] = {}
    duplicates = 0
    now = _now()
    with self._write() as db:
      for language, inputs, targets, source in seeds:
        cursor = db.execute(
            "INSERT OR IGNORE INTO items (kind, language, inputs, targets, source, created) "
            "VALUES ('seed', ?, ?, ?, ?, ?)", (language, inputs, targets, source, now))
        if cursor.rowcount:
          added[language] = added.get(language, 0) + 1
        else:
          duplicates += 1
    return added, duplicates

  def vote(self, *, user_id: str, language: str, item_id: int, up: bool) -> None:
    """Thumbs up or down on someone else's contribution (a later vote replaces it)."""
    with self._write() as db:
      self._check_target(item_id, user_id, language, "vote", kinds=("original", "reannotation"))
      db.execute("INSERT INTO votes (item_id, user_id, up, created) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (item_id, user_id) DO UPDATE SET up = excluded.up, "
                 "created = excluded.created", (item_id, user_id, int(up), _now()))

  def rate(self, *, user_id: str, language: str, item_id: int, rating: int) -> None:
    """A 1-5 rating of someone else's re-annotation (a later rating replaces it)."""
    if not isinstance(rating, int) or not 1 <= rating <= 5:
      raise StoreError(f"a rating is a whole number from 1 to 5, got {rating!r}")
    with self._write() as db:
      self._check_target(item_id, user_id, language, "rate", kinds=("reannotation",))
      db.execute("INSERT INTO ratings (item_id, user_id, rating, created) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (item_id, user_id) DO UPDATE SET rating = excluded.rating, "
                 "created = excluded.created", (item_id, user_id, rating, _now()))

  def skip(self, *, user_id: str, item_id: int, queue: str) -> None:
    """Takes an item out of one of a contributor's queues without a contribution."""
    if queue not in QUEUES:
      raise StoreError(f"unknown queue {queue!r}; queues are {', '.join(QUEUES)}")
    with self._write() as db:
      if self._get(item_id) is None:
        raise StoreError(f"there is no item {item_id}")
      db.execute("INSERT OR IGNORE INTO skips (item_id, user_id, queue) VALUES (?, ?, ?)",
                 (item_id, user_id, queue))

  def _check_target(self, item_id: int, user_id: str, language: str, action: str, *,
                    kinds: tuple[str, ...]) -> Item:
    item = self._get(item_id)
    if item is None:
      raise StoreError(f"there is no item {item_id}")
    if item.kind not in kinds:
      raise StoreError(f"item {item_id} is a {item.kind}; only {' or '.join(kinds)} items "
                       f"can be used to {action}")
    if item.language != language:
      raise StoreError(f"item {item_id} is in {item.language}, not in your language "
                       f"{language}")
    if item.user_id == user_id:
      raise StoreError(f"item {item_id} is your own contribution")
    return item

  # --------------------------------------------------------------------------- reads

  def _get(self, item_id: int) -> Item | None:
    row = self._db.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = ?",
                           (item_id,)).fetchone()
    return _item(row) if row else None

  def get(self, item_id: int) -> Item | None:
    """The item with this id, or None."""
    return self._get(item_id)

  def _next(self, where: str, order: str, user_id: str, language: str, queue: str
            ) -> Item | None:
    row = self._db.execute(
        f"SELECT {_ITEM_COLUMNS} FROM items AS i WHERE i.language = :language "
        "AND (i.user_id IS NULL OR i.user_id != :user) AND NOT EXISTS (SELECT 1 FROM skips "
        "AS s WHERE s.item_id = i.id AND s.user_id = :user AND s.queue = :queue) "
        f"AND {where} ORDER BY {order}, i.id LIMIT 1",
        {"language": language, "user": user_id, "queue": queue}).fetchone()
    return _item(row) if row else None

  def next_to_reannotate(self, user_id: str, language: str) -> Item | None:
    """The next seed or original pair of this language the contributor has not handled.

    Pairs with the fewest re-annotations come first, so that edits spread over the queue.
    """
    return self._next(
        "i.kind IN ('seed', 'original') AND NOT EXISTS (SELECT 1 FROM items AS r WHERE "
        "r.parent_id = i.id AND r.user_id = :user)",
        "(SELECT COUNT(*) FROM items AS r WHERE r.parent_id = i.id)", user_id, language,
        "reannotate")

  def next_to_vote(self, user_id: str, language: str) -> Item | None:
    """The next contribution of this language the contributor has not voted on."""
    return self._next(
        "i.kind IN ('original', 'reannotation') AND NOT EXISTS (SELECT 1 FROM votes AS v "
        "WHERE v.item_id = i.id AND v.user_id = :user)",
        "(SELECT COUNT(*) FROM votes AS v WHERE v.item_id = i.id)", user_id, language, "vote")

  def next_to_rate(self, user_id: str, language: str) -> Item | None:
    """The next re-annotation of this language the contributor has not rated."""
    return self._next(
        "i.kind = 'reannotation' AND NOT EXISTS (SELECT 1 FROM ratings AS r "
        "WHERE r.item_id = i.id AND r.user_id = :user)",
        "(SELECT COUNT(*) FROM ratings AS r WHERE r.item_id = i.id)", user_id, language, "rate")

  def counts(self, language: str | None = None) -> dict[str, int]:
    """Items per kind, votes and ratings (of one language, or of all)."""
    where, args = ("WHERE language = ?", (language,)) if language else ("", ())
    counts = dict.fromkeys(KINDS, 0)
    for kind, n in self._db.execute(
        f"SELECT kind, COUNT(*) FROM items {where} GROUP BY kind", args):
      counts[kind] = n
    join = "JOIN items AS i ON i.id = t.item_id " + ("WHERE i.language = ?" if language else "")
    for table in ("votes", "ratings"):
      counts[table] = self._db.execute(f"SELECT COUNT(*) FROM {table} AS t {join}",
                                       args).fetchone()[0]
    return counts

  def contributions_of(self, user_id: str) -> dict[str, int]:
    """What one contributor has done: originals, re-annotations, votes and ratings."""
    counts = {kind: 0 for kind in ("original", "reannotation")}
    for kind, n in self._db.execute(
        "SELECT kind, COUNT(*) FROM items WHERE user_id = ? GROUP BY kind", (user_id,)):
      counts[kind] = n
    for table in ("votes", "ratings"):
      counts[table] = self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?",
                                       (user_id,)).fetchone()[0]
    return counts

  def items(self) -> list[Item]:
    """Every item, in id order."""
    return [_item(r) for r in self._db.execute(f"SELECT {_ITEM_COLUMNS} FROM items ORDER BY id")]

  def votes(self) -> list[Vote]:
    return [Vote(item_id=i, user_id=u, up=bool(up)) for i, u, up in
            self._db.execute("SELECT item_id, user_id, up FROM votes ORDER BY item_id, user_id")]

  def ratings(self) -> list[Rating]:
    return [Rating(item_id=i, user_id=u, rating=r) for i, u, r in self._db.execute(
        "SELECT item_id, user_id, rating FROM ratings ORDER BY item_id, user_id")]
