"""Accounts on SQLite and PostgreSQL: invitations work once, throttled logins (never a
lock), password rules, ids unique regardless of case, sessions that end, the audit trail,
and the migrations of older databases."""

import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from aya_t5x.annotation import accounts, database, throttle
from aya_t5x.annotation.store import Store

from .conftest import PASSWORD, TEST_POLICY


@pytest.fixture
def people(db_target):
  with database.Database(db_target) as db:
    yield accounts.Accounts(db, TEST_POLICY)


def test_passwords_are_salted_scrypt_and_verified():
  first, second = (accounts.hash_password(PASSWORD, n=2**10) for _ in range(2))
  assert first.startswith("scrypt$1024$8$1$") and first != second  # a salt each
  assert PASSWORD not in first
  assert accounts.verify_password(PASSWORD, first)
  assert not accounts.verify_password(PASSWORD + "!", first)
  assert not accounts.verify_password(PASSWORD, None)
  with pytest.raises(accounts.AccountError, match="at least 10"):
    accounts.check_password("short", "short", user_id="amina")
  with pytest.raises(accounts.AccountError, match="differ"):
    accounts.check_password(PASSWORD, PASSWORD + "x", user_id="amina")


def test_an_invitation_works_once_even_when_raced(people):
  token, = people.create_invitations(created_by="lead", language="sw")
  invitation = people.invitation(token)
  assert (invitation.language, invitation.role, invitation.user_id) == ("sw", "contributor",
                                                                        None)
  results, errors = [], []

  def accept(n: int):
    try:
      results.append(people.accept_invitation(token, user_id=f"racer{n}", password=PASSWORD))
    except accounts.AccountError as e:
      errors.append(str(e))

  threads = [threading.Thread(target=accept, args=(n,)) for n in range(6)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert len(results) == 1 and len(errors) == 5  # one account, five refusals
  assert all("used already" in e for e in errors)
  assert people.invitation(token) is None
  assert people.role_of(results[0]) == "contributor"
  assert people.invitation("made-up-token") is None


def test_taken_user_ids_and_expired_invitations(people):
  first, second = people.create_invitations(created_by="lead", language="sw", count=2)
  people.accept_invitation(first, user_id="amina", password=PASSWORD)
  with pytest.raises(accounts.AccountError, match="taken"):
    people.accept_invitation(second, user_id="amina", password=PASSWORD)
  assert people.invitation(second) is not None  # the refused sign-up did not use it
  expired = accounts.Accounts(people.db, accounts.LoginPolicy(invitation_s=-1, scrypt_n=2**10))
  stale, = expired.create_invitations(created_by="lead", language="sw")
  with pytest.raises(accounts.AccountError, match="expired"):
    people.accept_invitation(stale, user_id="late", password=PASSWORD)


def test_failed_logins_are_slowed_per_client_never_locked(people):
  token, = people.create_invitations(created_by="lead", language="sw")
  people.accept_invitation(token, user_id="amina", password=PASSWORD)
  delays = []
  for _ in range(6):
    attempt = people.begin_login("amina", "203.0.113.1")
    result = people.finish_login(attempt, "guess")
    assert result.token is None and result.error == "wrong user id or password"
    delays.append(attempt.turn.answer_at - attempt.turn.check_at)
    time.sleep(max(0, result.answer_at - time.time()))  # as the app does before answering
  throttle_policy = TEST_POLICY.throttle
  assert delays == [pytest.approx(throttle_policy.delay(n), abs=1e-5) for n in range(1, 7)]
  assert delays[-1] == pytest.approx(throttle_policy.max_delay_s, abs=1e-5)
  # Another client that has not failed: checked at once, and the right password gets in.
  fresh = people.begin_login("amina", "198.51.100.1")
  assert not fresh.turn.throttled and fresh.turn.check_at <= time.time()
  assert people.finish_login(fresh, PASSWORD).token
  # An unknown id is counted and answered exactly as a real one.
  unknown = people.begin_login("nobody", "203.0.113.2")
  real = people.begin_login("amina", "203.0.113.3")
  assert (unknown.turn.answer_at - unknown.turn.check_at ==
          pytest.approx(real.turn.answer_at - real.turn.check_at, abs=1e-5) ==
          pytest.approx(throttle_policy.delay(1), abs=1e-5))
  assert (people.finish_login(unknown, "guess").error == people.finish_login(real, "guess").error
          == "wrong user id or password")
  actions = [a for _, user, a, _ in people.audit_log("amina")]
  assert "lock" not in actions and actions.count("login-failed") == 7


# Delays of seconds, so that the milliseconds each database call takes do not move turns.
SLOW_POLICY = accounts.LoginPolicy(
    throttle=throttle.ThrottlePolicy(delay_s=1, max_delay_s=10, parallel=2), scrypt_n=2**10)


def test_parallel_attempts_each_wait_their_turn(people):
  """The throttle's turns on a fixed clock (no timing in the test)."""
  db, policy, now = people.db, SLOW_POLICY.throttle, 1_000_000.0

  def turn(client: str, at: float = now) -> throttle.Turn:
    with db.write() as conn:
      return throttle.take_turn(conn, db, client=client, user_id="Amina", now=at,
                                policy=policy)

  def settle(client: str, turn: throttle.Turn, ok: bool, at: float = now) -> float:
    with db.write() as conn:
      return throttle.settle(conn, db, client=client, user_id="amina", turn=turn,
                             succeeded=ok, now=at, policy=policy)

  # A client without failures: `parallel` (2) attempts at one account at once, then a
  # queue 1 s apart up to 10 s ahead; further ones are refused unchecked.
  turns = [turn("203.0.113.7") for _ in range(16)]
  assert [t.throttled for t in turns] == [False] * 13 + [True] * 3
  assert [t.check_at - now for t in turns[:13]] == [0, 0, *range(11)]
  answers = [settle("203.0.113.7", t, ok=False) for t in turns[:13]]
  assert answers[-1] == max(t.answer_at for t in turns[:13])  # answered at its next turn
  # Now it has failures: its next attempt lies beyond 10 s and is refused unchecked.
  assert turn("203.0.113.7").throttled
  # Another client that fails once: its next attempt waits its own delay (1 s) plus the
  # account's (capped at 10 s), and one more sent in parallel lies too far ahead.
  first = turn("203.0.113.8")
  assert first.check_at == now
  settle("203.0.113.8", first, ok=False)
  second, third = turn("203.0.113.8"), turn("203.0.113.8")
  assert second.check_at == now + policy.delay(1) + policy.max_delay_s
  assert third.throttled
  # A client that has not failed is checked at once, whatever the account went through;
  # its success clears the account's counter.
  fresh = turn("198.51.100.9")
  assert fresh.check_at == now and not fresh.throttled
  settle("198.51.100.9", fresh, ok=True)
  settle("203.0.113.8", second, ok=False, at=second.check_at)
  later = turn("203.0.113.8", at=second.answer_at)
  assert later.check_at == second.answer_at  # no account delay left to wait for


def test_a_password_link_ends_the_throttling(people):
  people = accounts.Accounts(people.db, SLOW_POLICY)
  token, = people.create_invitations(created_by="lead", language="sw")
  people.accept_invitation(token, user_id="amina", password=PASSWORD)
  for _ in range(13):
    people.finish_login(people.begin_login("amina", "203.0.113.8"), "guess")
  assert people.begin_login("amina", "203.0.113.8").turn.throttled
  def account_failures():
    with people.db.read() as conn:
      return conn.execute(sa.select(database.login_throttle.c.failures).where(
          database.login_throttle.c.key == throttle.account_key("AMINA"))).scalar()

  assert account_failures() >= 2
  link = people.password_link(created_by="lead", creator_role="lead", creator_language="sw",
                              user_id="amina")
  people.accept_invitation(link, user_id="", password="a brand new passphrase")
  assert account_failures() is None  # the account's counter is gone
  attempt = people.begin_login("amina", "198.51.100.3")
  assert attempt.turn.check_at <= time.time()
  assert people.finish_login(attempt, "a brand new passphrase").token
  for role, language, user_id in (("lead", "yo", "amina"), ("lead", "sw", "ghost"),
                                  ("contributor", "sw", "amina")):
    with pytest.raises(accounts.AccountError, match="no contributor account of that user id"):
      people.password_link(created_by="x", creator_role=role, creator_language=language,
                           user_id=user_id)


def test_user_ids_are_unique_regardless_of_case(people):
  first, second = people.create_invitations(created_by="lead", language="sw", count=2)
  people.accept_invitation(first, user_id="Amina", password=PASSWORD)
  with pytest.raises(accounts.AccountError, match="taken"):
    people.accept_invitation(second, user_id="aMINA", password=PASSWORD)
  assert people.role_of("aMINA") is None and people.invitation(second) is not None
  # Logging in, case does not matter; the session is the account's own id.
  assert people.session(people.login("aMINA", PASSWORD).token).user_id == "Amina"


def test_password_rules():
  for password, message in (("password1234", "easy to guess"), ("1234567890", "easy to guess"),
                            ("abcdefghijk", "easy to guess"), ("zanzibar1999", "easy to guess"),
                            ("Amina-is-my-name", "user id")):
    with pytest.raises(accounts.AccountError, match=message):
      accounts.check_password(password, password, user_id="amina")
  assert accounts.check_password(PASSWORD, PASSWORD, user_id="amina") == PASSWORD
  long = "q7!vR" * 200  # a long password is scored on its start, quickly
  assert accounts.check_password(long, long, user_id="amina") == long


def test_sessions_expire_and_end_at_logout(people):
  token, = people.create_invitations(created_by="admin", language="yo", role="lead")
  people.accept_invitation(token, user_id="bola", password=PASSWORD)
  session_token = people.login("bola", PASSWORD).token
  session = people.session(session_token)
  assert (session.user_id, session.language, session.role) == ("bola", "yo", "lead")
  assert len(session.csrf) >= 40
  assert people.session(session_token + "x") is None and people.session(None) is None
  people.end_session(session_token)
  assert people.session(session_token) is None  # the same cookie is dead after logout
  short = accounts.Accounts(people.db, accounts.LoginPolicy(session_s=0.2, scrypt_n=2**10))
  brief = short.login("bola", PASSWORD).token
  assert short.session(brief) is not None
  time.sleep(0.3)
  assert short.session(brief) is None


def test_a_password_invitation_for_an_existing_account(people):
  token, = people.create_invitations(created_by="admin", language="sw")
  people.accept_invitation(token, user_id="amina", password=PASSWORD)
  live = people.login("amina", PASSWORD).token
  reset, = people.create_invitations(created_by="admin", language="", user_id="amina")
  assert people.invitation(reset).user_id == "amina"
  # The form's user id is ignored: the link sets amina's password, nobody else's.
  assert people.accept_invitation(reset, user_id="mallory", password="new password 123"
                                  ) == "amina"
  assert people.session(live) is None  # old sessions end with the old password
  assert people.login("amina", PASSWORD).token is None
  assert people.login("amina", "new password 123").token
  assert people.role_of("mallory") is None
  with pytest.raises(accounts.AccountError, match="no account"):
    people.create_invitations(created_by="admin", language="", user_id="ghost")


_VERSION_1 = """
CREATE TABLE contributors (user_id TEXT PRIMARY KEY, language TEXT NOT NULL,
  first_seen TEXT NOT NULL, last_seen TEXT NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, language TEXT NOT NULL,
  inputs TEXT NOT NULL, targets TEXT NOT NULL, user_id TEXT, parent_id INTEGER
  REFERENCES items(id), prompt_distance INTEGER, completion_distance INTEGER, source TEXT,
  created TEXT NOT NULL);
CREATE UNIQUE INDEX one_reannotation_per_contributor ON items (parent_id, user_id)
  WHERE kind = 'reannotation';
CREATE UNIQUE INDEX one_seed_per_pair ON items (language, inputs, targets) WHERE kind = 'seed';
CREATE TABLE votes (item_id INTEGER NOT NULL REFERENCES items(id), user_id TEXT NOT NULL,
  up INTEGER NOT NULL, created TEXT NOT NULL, PRIMARY KEY (item_id, user_id));
CREATE TABLE ratings (item_id INTEGER NOT NULL REFERENCES items(id), user_id TEXT NOT NULL,
  rating INTEGER NOT NULL, created TEXT NOT NULL, PRIMARY KEY (item_id, user_id));
CREATE TABLE skips (item_id INTEGER NOT NULL REFERENCES items(id), user_id TEXT NOT NULL,
  queue TEXT NOT NULL, PRIMARY KEY (item_id, user_id, queue));
INSERT INTO contributors VALUES ('amina', 'sw', 't', 't');
INSERT INTO items VALUES (1, 'seed', 'sw', 'swali', 'jibu', NULL, NULL, NULL, NULL, 'f:1', 't');
INSERT INTO items VALUES (2, 'original', 'sw', 'a', 'b', 'amina', NULL, NULL, NULL, NULL, 't');
INSERT INTO items VALUES (3, 'reannotation', 'sw', 'swali kubwa', 'jibu', 'baraka', 1, 6, 0,
  NULL, 't');
INSERT INTO votes VALUES (2, 'chema', 1, 't');
PRAGMA user_version = 1;
"""


def test_a_version_1_database_migrates_with_accounts_to_claim(tmp_path):
  path = tmp_path / "old.db"
  with sqlite3.connect(path) as old:
    old.executescript(_VERSION_1)
  with Store(path) as store:
    before = [(i.id, i.kind, i.inputs, i.user_id) for i in store.items()]
    assert before == [(1, "seed", "swali", None), (2, "original", "a", "amina"),
                      (3, "reannotation", "swali kubwa", "baraka")]
    assert store.add_seeds([("sw", "swali", "jibu", "f:9")]) == ({}, 1)  # still one seed
    # The queue counts were filled from the old rows: the edited seed comes after the
    # untouched original, and chema's vote counts on item 2.
    assert store.next_to_reannotate("dayo", "sw").id == 2
    store.skip(user_id="dayo", language="sw", item_id=2, queue="reannotate")
    assert store.next_to_reannotate("dayo", "sw").id == 1
    assert store.next_to_vote("dayo", "sw").id == 3
    people = accounts.Accounts(store.db, TEST_POLICY)
    for user_id in ("amina", "baraka", "chema"):
      assert people.role_of(user_id) == "contributor"
      # No password yet: the same answer as any failed login (no account is told apart).
      assert people.login(user_id, "anything at all").error == "wrong user id or password"
    link, = people.create_invitations(created_by="admin", language="", user_id="baraka")
    people.accept_invitation(link, user_id="baraka", password=PASSWORD)
    assert people.session(people.login("baraka", PASSWORD).token).language == "sw"
    assert [a for _, _, a, _ in people.audit_log()][0] == "migrate"
  with Store(path) as store:  # opening again does not migrate twice
    assert len(store.items()) == 3


def test_invite_command_prints_links_or_writes_a_private_file(tmp_path, capsys):
  from aya_t5x import cli

  db = str(tmp_path / "a.db")
  assert cli.main(["annotate", "invite", "--db", db, "--language", "Yoruba", "--count", "3",
                   "--role", "lead", "--url", "https://annotate.example.org/"]) == 0
  links = capsys.readouterr().out.split()
  assert len(links) == 3 and len(set(links)) == 3
  assert all(link.startswith("https://annotate.example.org/join?token=") for link in links)
  with database.Database(db) as opened:
    people = accounts.Accounts(opened)
    invitation = people.invitation(links[0].split("token=")[1])
    assert (invitation.language, invitation.role) == ("yo", "lead")
    _, who, action, detail = people.audit_log()[-1]
    assert who.startswith("cli:") and action == "invite" and "3 lead" in detail
  assert cli.main(["annotate", "invite", "--db", db]) == 2
  assert "give --language" in capsys.readouterr().err
  assert cli.main(["annotate", "invite", "--db", db, "--language", "Klingonish"]) == 2
  assert "Klingonish" in capsys.readouterr().err


def test_a_version_2_database_keeps_its_case_twins(tmp_path):
  """Version 2 allowed `Amina` beside `amina`: both keep working after the upgrade, the
  older holds the case-folded id, and no new id may fold onto either."""
  path = tmp_path / "v2.db"
  with database.Database(path) as db:
    people = accounts.Accounts(db, TEST_POLICY)
    hashed = accounts.hash_password(PASSWORD, n=2**10)
    with db.write() as conn:  # back to version 2's shape, with two case-twins in it
      conn.exec_driver_sql("DROP INDEX accounts_by_key")
      conn.exec_driver_sql("ALTER TABLE accounts DROP COLUMN user_key")
      conn.exec_driver_sql("ALTER TABLE accounts ADD COLUMN failed_logins INTEGER NOT NULL "
                           "DEFAULT 0")
      conn.exec_driver_sql("DROP TABLE login_throttle")
      conn.exec_driver_sql("UPDATE schema_info SET version = 2")
      for user_id, created in (("amina", "2026-01-02"), ("Amina", "2026-01-01")):
        conn.exec_driver_sql(
            "INSERT INTO accounts (user_id, language, role, password_hash, created) "
            "VALUES (?, 'sw', 'contributor', ?, ?)", (user_id, hashed, created))
  with database.Database(path) as db:
    people = accounts.Accounts(db, TEST_POLICY)
    with db.read() as conn:
      keys = dict(conn.execute(sa.select(database.accounts.c.user_id,
                                         database.accounts.c.user_key)).all())
      version = conn.execute(sa.select(database.schema_info.c.version)).scalar_one()
    assert version == database.SCHEMA_VERSION
    assert keys == {"Amina": "amina", "amina": "amina#amina"}  # the older one holds the key
    assert people.login("Amina", PASSWORD).token and people.login("amina", PASSWORD).token
    link, = people.create_invitations(created_by="lead", language="sw")
    with pytest.raises(accounts.AccountError, match="taken"):
      people.accept_invitation(link, user_id="AMINA", password=PASSWORD)
    _, _, action, detail = [row for row in people.audit_log() if row[2] == "migrate"][-1]
    assert "only in case, kept: amina" in detail


def test_a_crowd_behind_one_address_is_not_slowed_by_its_numbers(people):
  """A school's NAT: 30 people log in at the same moment from one address, each to their
  own account; none waits, and a typo among them slows only the attempts that follow it."""
  people = accounts.Accounts(people.db, SLOW_POLICY)
  for n in range(30):
    token, = people.create_invitations(created_by="lead", language="sw")
    people.accept_invitation(token, user_id=f"pupil{n}", password=PASSWORD)
  attempts = [people.begin_login(f"pupil{n}", "192.0.2.50") for n in range(30)]
  assert all(a.turn.check_at <= time.time() and not a.turn.throttled for a in attempts)
  assert all(people.finish_login(a, PASSWORD).token for a in attempts)
