"""The store on SQLite and PostgreSQL: per-language queues, feedback rules, and writes from
many threads and processes at once (each test runs on both stores)."""

import subprocess
import sys
import threading

import pytest

from aya_t5x.annotation.edit_distance import levenshtein
from aya_t5x.annotation.store import Store, StoreError


@pytest.fixture
def store(db_target):
  with Store(db_target) as s:
    yield s


def test_reannotation_queue_is_per_language_and_unseen(store):
  store.add_seeds([("sw", "swali la kwanza", "jibu", "f:1"), ("yo", "ìbéèrè", "ìdáhùn", "f:2"),
                   ("sw", "swali la pili", "jibu", "f:3")])
  mine = store.add_original(user_id="amina", language="sw", inputs="yangu", targets="mimi")
  first = store.next_to_reannotate("amina", "sw")
  assert (first.kind, first.inputs) == ("seed", "swali la kwanza")
  edit = store.add_reannotation(user_id="amina", language="sw", parent_id=first.id,
                                inputs="swali la kwanza kabisa", targets="jibu!")
  assert (edit.prompt_distance, edit.completion_distance) == (
      levenshtein("swali la kwanza", "swali la kwanza kabisa"), 1)
  second = store.next_to_reannotate("amina", "sw")
  assert second.inputs == "swali la pili"
  store.skip(user_id="amina", language="sw", item_id=second.id, queue="reannotate")
  # Her own original and the Yoruba seed never reach her Swahili queue.
  assert store.next_to_reannotate("amina", "sw") is None
  # Another contributor gets the least re-annotated pairs first, the edited one last.
  assert store.next_to_reannotate("baraka", "sw").id == second.id
  store.skip(user_id="baraka", language="sw", item_id=second.id, queue="reannotate")
  assert store.next_to_reannotate("baraka", "sw").id == mine.id
  store.skip(user_id="baraka", language="sw", item_id=mine.id, queue="reannotate")
  assert store.next_to_reannotate("baraka", "sw").id == first.id
  assert store.next_to_reannotate("bola", "yo").inputs == "ìbéèrè"
  with pytest.raises(StoreError, match="already"):
    store.add_reannotation(user_id="amina", language="sw", parent_id=first.id, inputs="x",
                           targets="y")
  with pytest.raises(StoreError, match="your own"):
    store.add_reannotation(user_id="amina", language="sw", parent_id=mine.id, inputs="x",
                           targets="y")
  # Another language's item, another kind and a missing id: one refusal, which tells
  # nothing about items a contributor may not see.
  with pytest.raises(StoreError, match=f"^there is no item {first.id} to reannotate in your "):
    store.add_reannotation(user_id="bola", language="yo", parent_id=first.id, inputs="x",
                           targets="y")
  with pytest.raises(StoreError, match="^there is no item 999 to reannotate in your language$"):
    store.skip(user_id="bola", language="yo", item_id=999, queue="reannotate")
  with pytest.raises(StoreError, match=f"^there is no item {first.id} to reannotate in your "):
    store.skip(user_id="bola", language="yo", item_id=first.id, queue="reannotate")
  with pytest.raises(StoreError, match=f"^there is no item {edit.id} to reannotate in your "):
    store.add_reannotation(user_id="baraka", language="sw", parent_id=edit.id, inputs="x",
                           targets="y")


def test_votes_and_ratings(store):
  store.add_seeds([("sw", "s", "t", "f:1")])
  original = store.add_original(user_id="amina", language="sw", inputs="a", targets="b")
  edit = store.add_reannotation(user_id="baraka", language="sw", parent_id=original.id,
                                inputs="aaaa", targets="bbbb")
  assert store.next_to_vote("chema", "sw").id == original.id  # seeds are not voted on
  store.vote(user_id="chema", language="sw", item_id=original.id, up=True)
  store.vote(user_id="chema", language="sw", item_id=original.id, up=False)  # changes it
  assert [(v.item_id, v.up) for v in store.votes()] == [(original.id, False)]
  assert store.next_to_vote("chema", "sw").id == edit.id
  assert store.next_to_rate("chema", "sw").id == edit.id
  assert store.next_to_rate("baraka", "sw") is None  # his own
  store.rate(user_id="chema", language="sw", item_id=edit.id, rating=4)
  assert store.next_to_rate("chema", "sw") is None
  for bad in (0, 6, 2.5):
    with pytest.raises(StoreError, match="1 to 5"):
      store.rate(user_id="amina", language="sw", item_id=edit.id, rating=bad)
  with pytest.raises(StoreError, match="no item .* to rate in your language"):
    store.rate(user_id="baraka", language="sw", item_id=original.id, rating=3)
  with pytest.raises(StoreError, match="your own"):
    store.vote(user_id="amina", language="sw", item_id=original.id, up=True)
  with pytest.raises(StoreError, match="no item"):
    store.vote(user_id="amina", language="sw", item_id=999, up=True)
  assert store.counts("sw") == {"seed": 1, "original": 1, "reannotation": 1, "votes": 1,
                                "ratings": 1}


def test_seeds_are_not_added_twice(store):
  assert store.add_seeds([("sw", "a", "b", "f:1"), ("sw", "a", "b", "f:2"),
                          ("yo", "a", "b", "f:3")]) == ({"sw": 1, "yo": 1}, 1)


def test_bad_database_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="existing folder"):
    Store(tmp_path / "missing" / "a.db")
  (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
  with pytest.raises(ValueError, match="not an annotation database"):
    Store(tmp_path / "junk.db")


def test_concurrent_threads_lose_no_write(db_target):
  path = db_target
  Store(path).close()
  errors = []

  def contributor(n: int):
    try:
      with Store(path) as store:
        for i in range(25):
          store.add_original(user_id=f"user{n}", language="sw", inputs=f"{n}-{i}",
                             targets="x")
    except Exception as e:  # noqa: BLE001 (reported below)
      errors.append(e)

  threads = [threading.Thread(target=contributor, args=(n,)) for n in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors
  with Store(path) as store:
    assert sorted(i.inputs for i in store.items()) == sorted(
        f"{n}-{i}" for n in range(8) for i in range(25))


_WRITER = """
import sys
from aya_t5x.annotation.store import Store
n = int(sys.argv[2])
with Store(sys.argv[1]) as store:
  for i in range(25):
    store.add_original(user_id=f"p{n}", language="yo", inputs=f"{n}-{i}", targets="y")
"""


def test_concurrent_processes_lose_no_write(db_target):
  path = db_target  # its tables created by the racing processes themselves
  procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(n)],
                            stderr=subprocess.PIPE, text=True) for n in range(4)]
  for proc in procs:
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
  with Store(path) as store:
    assert sorted(i.inputs for i in store.items()) == sorted(
        f"{n}-{i}" for n in range(4) for i in range(25))
