"""Contributions of the annotation platform: pairs, feedback and per-language queues.

Through `database.Database` (SQLite by default, PostgreSQL for several app servers):

- `items`: prompt/completion pairs. `seed` pairs are imported for re-annotation
  (`aya-t5x annotate import`); `original` pairs are written by a contributor;
  `reannotation` pairs edit a seed or an original (`parent_id`) and carry the character
  edit distances the server computed when they were saved.
- `votes` (thumbs up or down, one per contributor and item, changeable), `ratings` (1-5 on
  re-annotations, one per contributor and item) and `skips` (what a contributor passed
  over in a queue, so that it is not served again).
- `contributors`: the first version's record of logins (kept; accounts replace it).

Every write is one transaction that also writes its audit row; the rules a write checks
(not your own item, your language, once per re-annotation) are read inside it, and the
unique constraints refuse a racing duplicate, so no write is lost or doubled by
concurrency on either store.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from aya_t5x.annotation import database, edit_distance
from aya_t5x.annotation.database import items, ratings, skips, votes

KINDS = ("seed", "original", "reannotation")
QUEUES = ("reannotate", "vote", "rate")
# The kinds of item each queue serves (and each action takes).
QUEUE_KINDS = {"reannotate": ("seed", "original"), "vote": ("original", "reannotation"),
               "rate": ("reannotation",)}


class StoreError(ValueError):
  """A contribution the rules refuse (own item, wrong language, rated twice, ...)."""


class NotVisible(StoreError):
  """An item id a contributor may not act on: missing, another kind or another language
  (one message for all three)."""


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


_ITEM_COLUMNS = [items.c[f.name] for f in dataclasses.fields(Item)]


def _item(row: Any) -> Item:
  return Item(**row._mapping)


def _queue(queue: str, kinds: tuple[str, ...], done: sa.Table, done_key: str,
           count: str) -> sa.Select:
  """The query of the next item of a queue, built once (pages run it on every load).

  Items of the language, not the contributor's own, not skipped and not yet handled by
  them, the least handled first: with the index on (language, count, id) the database
  walks the queue in order and stops at the first that qualifies.
  """
  i = items.alias("i")
  user = sa.bindparam("user", type_=sa.Text)
  skipped = sa.exists().where(skips.c.item_id == i.c.id, skips.c.user_id == user,
                              skips.c.queue == queue)
  handled = sa.exists().where(done.c[done_key] == i.c.id, done.c.user_id == user)
  return (sa.select(*[i.c[c.name] for c in _ITEM_COLUMNS])
          .where(i.c.language == sa.bindparam("language", type_=sa.Text),
                 i.c.kind.in_(kinds), sa.or_(i.c.user_id.is_(None), i.c.user_id != user),
                 ~skipped, ~handled)
          .order_by(i.c[count], i.c.id).limit(1))


_QUEUES = {
    "reannotate": _queue("reannotate", ("seed", "original"), items.alias("r"), "parent_id",
                         "reannotation_count"),
    "vote": _queue("vote", ("original", "reannotation"), votes, "item_id", "vote_count"),
    "rate": _queue("rate", ("reannotation",), ratings, "item_id", "rating_count"),
}


class Store:
  """Contributions in one annotation database.

  Args:
    db: an open `Database` (shared; the caller closes it), or a SQLite file path or
      database URL (this store opens and closes its own).
  """

  def __init__(self, db: database.Database | str | os.PathLike):
    self._owned = not isinstance(db, database.Database)
    self.db = database.Database(db) if self._owned else db

  def close(self) -> None:
    if self._owned:
      self.db.close()

  def __enter__(self) -> Store:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # --------------------------------------------------------------------------- contributions

  def add_original(self, *, user_id: str, language: str, inputs: str, targets: str) -> Item:
    """Saves a pair a contributor wrote."""
    with self.db.write() as conn:
      item_id = conn.execute(items.insert().values(
          kind="original", language=language, inputs=inputs, targets=targets,
          user_id=user_id, created=database.now_text())).inserted_primary_key[0]
      database.log_event(conn, user_id, "write", f"item {item_id}")
      return self._get(conn, item_id)

  def add_reannotation(self, *, user_id: str, language: str, parent_id: int, inputs: str,
                       targets: str) -> Item:
    """Saves an edit of a seed or original pair, with its edit distances computed here.

    Raises:
      StoreError: the parent is missing, a re-annotation itself or in another language (one
        message for the three), the contributor's own, or re-annotated by them already.
    """
    with self.db.write() as conn:
      parent = self._check_target(conn, parent_id, user_id, language, "reannotate")
      prompt_d, completion_d = edit_distance.pair_distance(
          (parent.inputs, parent.targets), (inputs, targets))
      insert = self.db.insert(items).values(
          kind="reannotation", language=parent.language, inputs=inputs, targets=targets,
          user_id=user_id, parent_id=parent_id, prompt_distance=prompt_d,
          completion_distance=completion_d, created=database.now_text())
      # The partial unique index refuses a second edit (also one racing this one).
      item_id = conn.execute(insert.on_conflict_do_nothing().returning(items.c.id)).scalar()
      if item_id is None:
        raise StoreError(f"you re-annotated item {parent_id} already")
      conn.execute(items.update().where(items.c.id == parent_id)
                   .values(reannotation_count=items.c.reannotation_count + 1))
      database.log_event(conn, user_id, "reannotate", f"item {item_id} of {parent_id}")
      return self._get(conn, item_id)

  def add_seeds(self, seeds: Iterable[tuple[str, str, str, str]]
                ) -> tuple[dict[str, int], int]:
    """Adds (language, inputs, targets, source) pairs to the re-annotation queues.

    Returns ({language: pairs added}, duplicates): a pair already seeded in its language
    is not added twice. All seeds go in one transaction, so a failed import adds nothing.
    """
    added: dict[str, int] = {}
    duplicates = 0
    now = database.now_text()
    with self.db.write() as conn:
      for language, inputs, targets, source in seeds:
        insert = self.db.insert(items).values(
            kind="seed", language=language, inputs=inputs, targets=targets, source=source,
            created=now, seed_key=database.seed_key(language, inputs, targets))
        # The inserted id, or none for a duplicate (rowcount is not reliable with the
        # RETURNING that PostgreSQL inserts use).
        if conn.execute(insert.on_conflict_do_nothing().returning(items.c.id)).first():
          added[language] = added.get(language, 0) + 1
        else:
          duplicates += 1
    return added, duplicates

  def vote(self, *, user_id: str, language: str, item_id: int, up: bool) -> None:
    """Thumbs up or down on someone else's contribution (a later vote replaces it)."""
    with self.db.write() as conn:
      self._check_target(conn, item_id, user_id, language, "vote")
      self._first_or_replace(conn, votes, "vote_count", item_id, user_id, up=int(up))
      database.log_event(conn, user_id, "vote", f"item {item_id} {'up' if up else 'down'}")

  def rate(self, *, user_id: str, language: str, item_id: int, rating: int) -> None:
    """A 1-5 rating of someone else's re-annotation (a later rating replaces it)."""
    if not isinstance(rating, int) or not 1 <= rating <= 5:
      raise StoreError(f"a rating is a whole number from 1 to 5, got {rating!r}")
    with self.db.write() as conn:
      self._check_target(conn, item_id, user_id, language, "rate")
      self._first_or_replace(conn, ratings, "rating_count", item_id, user_id, rating=rating)
      database.log_event(conn, user_id, "rate", f"item {item_id} {rating}")

  def _first_or_replace(self, conn: sa.Connection, table: sa.Table, count_column: str,
                        item_id: int, user_id: str, **value: int) -> None:
    """A contributor's vote or rating of an item: the first one counts on the item, a
    later one replaces it. Of two racing first ones, one inserts and the other replaces."""
    created = database.now_text()
    first = conn.execute(self.db.insert(table).values(
        item_id=item_id, user_id=user_id, created=created, **value)
        .on_conflict_do_nothing().returning(table.c.item_id)).first()
    if first:
      conn.execute(items.update().where(items.c.id == item_id)
                   .values({count_column: items.c[count_column] + 1}))
    else:
      conn.execute(table.update().where(table.c.item_id == item_id, table.c.user_id == user_id)
                   .values(created=created, **value))

  def skip(self, *, user_id: str, language: str, item_id: int, queue: str) -> None:
    """Takes an item out of one of a contributor's queues without a contribution."""
    if queue not in QUEUES:
      raise StoreError(f"unknown queue {queue!r}; queues are {', '.join(QUEUES)}")
    with self.db.write() as conn:
      self._visible(conn, item_id, language, queue)
      conn.execute(self.db.insert(skips).values(item_id=item_id, user_id=user_id, queue=queue)
                   .on_conflict_do_nothing())

  def _visible(self, conn: sa.Connection, item_id: int, language: str, queue: str) -> Item:
    """The item if it could be in a queue of this language, else one refusal for all
    (missing, another kind, another language), so that ids of other languages' items
    cannot be told from unused ones."""
    item = self._get(conn, item_id)
    if item is None or item.kind not in QUEUE_KINDS[queue] or item.language != language:
      raise NotVisible(f"there is no item {item_id} to {queue} in your language")
    return item

  def _check_target(self, conn: sa.Connection, item_id: int, user_id: str, language: str,
                    queue: str) -> Item:
    item = self._visible(conn, item_id, language, queue)
    if item.user_id == user_id:
      raise StoreError(f"item {item_id} is your own contribution")
    return item

  def target(self, *, user_id: str, language: str, item_id: int, queue: str) -> Item:
    """The item a contributor may `queue` (re-annotate, vote on, rate), or StoreError."""
    with self.db.read() as conn:
      return self._check_target(conn, item_id, user_id, language, queue)

  @staticmethod
  def _get(conn: sa.Connection, item_id: int) -> Item | None:
    if not -2**31 <= item_id < 2**31:  # PostgreSQL's INTEGER; no such id on either store
      return None
    row = conn.execute(sa.select(*_ITEM_COLUMNS).where(items.c.id == item_id)).first()
    return _item(row) if row else None

  def get(self, item_id: int) -> Item | None:
    """The item with this id, or None."""
    with self.db.read() as conn:
      return self._get(conn, item_id)

  def _next(self, queue: str, user_id: str, language: str) -> Item | None:
    with self.db.read() as conn:
      row = conn.execute(_QUEUES[queue], {"user": user_id, "language": language}).first()
    return _item(row) if row else None

  def next_to_reannotate(self, user_id: str, language: str) -> Item | None:
    """The next seed or original pair of this language the contributor has not handled.

    Pairs with the fewest re-annotations come first, so that edits spread over the queue.
    """
    return self._next("reannotate", user_id, language)

  def next_to_vote(self, user_id: str, language: str) -> Item | None:
    """The next contribution of this language the contributor has not voted on (the
    least voted on first)."""
    return self._next("vote", user_id, language)

  def next_to_rate(self, user_id: str, language: str) -> Item | None:
    """The next re-annotation of this language the contributor has not rated (the least
    rated first)."""
    return self._next("rate", user_id, language)

  def counts(self, language: str | None = None) -> dict[str, int]:
    """Items per kind, votes and ratings (of one language, or of all)."""
    counts = dict.fromkeys(KINDS, 0)
    query = sa.select(items.c.kind, sa.func.count()).group_by(items.c.kind)
    if language:
      query = query.where(items.c.language == language)
    with self.db.read() as conn:
      for kind, n in conn.execute(query):
        counts[kind] = n
      for name, table in (("votes", votes), ("ratings", ratings)):
        count = sa.select(sa.func.count()).select_from(table)
        if language:
          count = count.join(items, items.c.id == table.c.item_id).where(
              items.c.language == language)
        counts[name] = conn.execute(count).scalar_one()
    return counts

  def contributions_of(self, user_id: str) -> dict[str, int]:
    """What one contributor has done: originals, re-annotations, votes and ratings."""
    counts = {kind: 0 for kind in ("original", "reannotation")}
    with self.db.read() as conn:
      for kind, n in conn.execute(sa.select(items.c.kind, sa.func.count())
                                  .where(items.c.user_id == user_id).group_by(items.c.kind)):
        counts[kind] = n
      for name, table in (("votes", votes), ("ratings", ratings)):
        counts[name] = conn.execute(sa.select(sa.func.count()).select_from(table)
                                    .where(table.c.user_id == user_id)).scalar_one()
    return counts

  def items(self) -> list[Item]:
    """Every item, in id order."""
    with self.db.read() as conn:
      return [_item(r) for r in conn.execute(sa.select(*_ITEM_COLUMNS).order_by(items.c.id))]

  def votes(self) -> list[Vote]:
    with self.db.read() as conn:
      return [Vote(item_id=i, user_id=u, up=bool(up)) for i, u, up in conn.execute(
          sa.select(votes.c.item_id, votes.c.user_id, votes.c.up)
          .order_by(votes.c.item_id, votes.c.user_id))]

  def ratings(self) -> list[Rating]:
    with self.db.read() as conn:
      return [Rating(item_id=i, user_id=u, rating=r) for i, u, r in conn.execute(
          sa.select(ratings.c.item_id, ratings.c.user_id, ratings.c.rating)
          .order_by(ratings.c.item_id, ratings.c.user_id))]
