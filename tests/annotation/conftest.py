"""Fixtures for the annotation tests: databases on SQLite and PostgreSQL, a running app on a
free port, accounts, and a browser-like HTTP client.

PostgreSQL tests need a server: `AYA_TEST_POSTGRES_URL` names a database whose user may
create databases (.ci/run starts one and sets it); each test gets a fresh database of its
own, dropped afterwards. Without the variable those tests skip, saying so.
"""

import http.cookiejar
import logging
import os
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

import pytest

from aya_t5x.annotation import accounts, database, export, forms, server, throttle

POSTGRES_URL = os.environ.get("AYA_TEST_POSTGRES_URL")
PASSWORD = "correct horse battery staple"


def _admin_connection():
  import psycopg

  url = database.database_url(POSTGRES_URL).set(drivername="postgresql")
  return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


@pytest.fixture
def postgres_url():
  """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
  if not POSTGRES_URL:
    pytest.skip("no PostgreSQL server: set AYA_TEST_POSTGRES_URL=postgresql://user:pass@host/db "
                "(.ci/run starts one)")
  name = f"aya_test_{secrets.token_hex(6)}"
  with _admin_connection() as conn:
    conn.execute(f"CREATE DATABASE {name}")
  yield database.database_url(POSTGRES_URL).set(database=name).render_as_string(
      hide_password=False)
  with _admin_connection() as conn:
    conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path):
  """The same test on a SQLite file and on a PostgreSQL database."""
  if request.param == "sqlite":
    return str(tmp_path / "annotations.db")
  return request.getfixturevalue("postgres_url")


class Client:
  """A browser-like HTTP client (cookies, redirects followed) for one person.

  It keeps the CSRF token of the last page it was served and sends it with each form,
  as the app's own pages do.
  """

  def __init__(self, base_url: str, *, address: str | None = None):
    self.base_url = base_url
    # The client's address as the local proxy reports it (uvicorn trusts X-Forwarded-For
    # from 127.0.0.1): distinct people for the throttling tests.
    self.headers = {"X-Forwarded-For": address} if address else {}
    self.cookies = http.cookiejar.CookieJar()
    self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
    self.csrf = ""

  def request(self, path: str, data: dict | bytes | None = None, headers: dict | None = None
              ) -> tuple[int, str, Message]:
    if isinstance(data, dict):
      data = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(self.base_url + path, data=data,
                                     headers={**self.headers, **(headers or {})})
    try:
      with self.opener.open(request, timeout=60) as response:
        status, body, response_headers = (response.status, response.read().decode(),
                                          response.headers)
    except urllib.error.HTTPError as e:
      status, body, response_headers = e.code, e.read().decode(), e.headers
    if token := re.search(r'name="csrf" value="([^"]+)"', body):
      self.csrf = token.group(1)
    return status, body, response_headers

  def get(self, path: str):
    return self.request(path)

  def post(self, path: str, **fields):
    fields.setdefault("csrf", self.csrf)
    return self.request(path, fields)

  def cookie(self, name: str) -> str | None:
    return next((c.value for c in self.cookies if c.name == name), None)

  def login(self, user_id: str, password: str = PASSWORD) -> "Client":
    self.get("/login")
    status, body, _ = self.post("/login", user_id=user_id, password=password)
    assert status == 200 and "Log out" in body, body
    return self


# Fast throttling and hashing for tests: the same rules, with waits of milliseconds and
# scrypt at 1 MiB (each hash records its cost; production hashes use 32 MiB).
TEST_POLICY = accounts.LoginPolicy(
    throttle=throttle.ThrottlePolicy(delay_s=0.05, max_delay_s=0.2), scrypt_n=2**10)


def start_app(db: str, **config) -> server.RunningServer:
  config = {"port": 0, "limits": forms.Limits(max_field_chars=200), "policy": TEST_POLICY,
            "pool_size": 4, "export_rules": export.ExportRules(min_language_contributions=1),
            **config}
  config = server.ServerConfig(db=db, **config)
  return server.make_server(config).start()


@pytest.fixture
def app(tmp_path):
  """A running app with a fresh SQLite database and small size limits."""
  srv = start_app(str(tmp_path / "annotations.db"))
  yield srv
  srv.shutdown()


def add_account(app: server.RunningServer, user_id: str, language: str = "sw",
                role: str = "contributor", password: str = PASSWORD) -> str:
  """An account made the way people make them: an invitation, accepted."""
  people = app.app.accounts
  token, = people.create_invitations(created_by="test", language=language, role=role)
  return people.accept_invitation(token, user_id=user_id, password=password)


@pytest.fixture
def client_for(app):
  """client_for(user id, language, role): a logged-in client of a new account."""

  def make(user_id: str, language: str = "sw", role: str = "contributor") -> Client:
    add_account(app, user_id, language, role)
    return Client(app.url).login(user_id)

  return make


@pytest.fixture
def server_log():
  """The records uvicorn and Starlette log while the test runs (tracebacks included)."""
  records = []

  class Keep(logging.Handler):
    def emit(self, record):
      records.append(record)

  handler = Keep(level=logging.WARNING)
  loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "starlette")]
  for logger in loggers:
    logger.addHandler(handler)
  yield records
  for logger in loggers:
    logger.removeHandler(handler)
