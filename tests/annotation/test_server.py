"""The web app over HTTP: sessions, refused submissions that lose nothing, escaping, load."""

import html
import re
import subprocess
import sys
import threading
import urllib.request

import pytest

from aya_t5x.annotation.edit_distance import levenshtein
from aya_t5x.annotation.store import Store

from .conftest import PASSWORD, Client, add_account, start_app


def _textarea(body: str, name: str) -> str:
  """The text a browser shows in a textarea (one leading newline dropped, entities decoded)."""
  match = re.search(rf'<textarea[^>]* name="{name}"[^>]*>\n(.*?)</textarea>', body, re.S)
  assert match, f"no textarea {name}"
  return html.unescape(match.group(1))


def _items(app):
  with Store(app.config.db) as store:
    return store.items()


def test_login_logout_and_the_session(app):
  add_account(app, "amina", "sw")
  client = Client(app.url)
  status, body, _ = client.get("/write")
  assert status == 200 and 'id="login-form"' in body  # redirected to the login page
  status, body, _ = client.post("/login", user_id="amina", password="wrong password")
  assert status == 401 and "wrong user id or password" in body
  assert 'value="amina"' in body  # the form keeps the user id, never the password
  status, body, _ = client.post("/login", user_id="nobody", password=PASSWORD)
  assert status == 401 and "wrong user id or password" in body  # the same answer
  status, body, headers = client.post("/login", user_id="amina", password=PASSWORD)
  assert status == 200 and "amina · Swahili (sw)" in body
  cookie = next(c for c in client.cookies if c.name == "aya_session")
  assert cookie.has_nonstandard_attr("HttpOnly") and not cookie.secure
  assert len(cookie.value) >= 40 and "amina" not in cookie.value  # opaque, not the user id
  status, body, _ = client.post("/logout")
  assert status == 200 and 'id="login-form"' in body
  assert 'id="login-form"' in client.get("/")[1]


def test_refused_submissions_keep_the_text_and_lose_nothing(app, client_for):
  client = client_for("amina")
  status, _, _ = client.post("/write", prompt="Habari?", completion="Nzuri sana.")
  assert status == 200
  saved = _items(app)
  status, body, _ = client.post("/write", prompt="Swali langu", completion="   ")
  assert status == 400
  assert "the completion is empty" in body and "Nothing was saved" in body
  assert _textarea(body, "prompt") == "Swali langu"
  long_text = "neno " * 41  # 205 characters; the fixture's limit is 200
  status, body, _ = client.post("/write", prompt=long_text, completion="jibu")
  assert status == 400 and "has 205 characters; the limit is 200" in body
  assert _textarea(body, "prompt") == long_text and _textarea(body, "completion") == "jibu"
  huge = b"prompt=" + b"a" * (app.config.limits.body_bytes + 1) + b"&completion=b"
  status, body, _ = client.request("/write", huge)
  assert status == 413 and "Nothing was saved" in body
  status, body, _ = client.request("/write", b"prompt=\xff\xfe&completion=x")
  assert status == 400 and "could not be read" in body
  assert _items(app) == saved  # nothing added, nothing changed


def test_reannotation_stores_the_server_distance(app, client_for):
  with Store(app.config.db) as store:
    store.add_seeds([("sw", "Mji mkuu wa Kenya ni upi?", "Nairobi", "seed.jsonl:1")])
  client = client_for("baraka")
  status, body, _ = client.get("/reannotate")
  assert "Mji mkuu wa Kenya ni upi?" in body and 'id="distance-total"' in body
  seed_id = int(re.search(r'name="item_id" value="(\d+)"', body).group(1))
  status, body, _ = client.post("/reannotate", item_id=str(seed_id), action="save",
                                prompt="Mji mkuu wa Kenya ni mji gani?",
                                completion="Nairobi ndio mji mkuu.\r\nNi mji mkubwa.")
  assert status == 200 and "edit distance 7 in the prompt" in body
  edit = _items(app)[-1]
  assert edit.targets == "Nairobi ndio mji mkuu.\nNi mji mkubwa."  # CRLF as the page shows
  assert (edit.prompt_distance, edit.completion_distance) == (
      levenshtein("Mji mkuu wa Kenya ni upi?", edit.inputs),
      levenshtein("Nairobi", edit.targets))
  assert 'id="empty-queue"' in client.get("/reannotate")[1]
  status, body, _ = client.post("/reannotate", item_id=str(seed_id), action="save",
                                prompt="again", completion="again")
  assert status == 409 and "already" in body


def test_contributor_text_is_escaped(app, client_for):
  attack = '<script>alert(1)</script><img src=x onerror="alert(2)">'
  client_for("mallory").post("/write", prompt=attack, completion=attack)
  status, body, headers = client_for("victim").get("/vote")
  assert "<script>alert" not in body and "<img src=x" not in body
  shown = re.findall(r"<pre>\n(.*?)</pre>", body, re.S)
  assert [html.unescape(text) for text in shown] == [attack, attack]
  assert "script-src 'self'" in headers["Content-Security-Policy"]


def test_vote_and_rate_forms(app, client_for):
  with Store(app.config.db) as store:
    original = store.add_original(user_id="amina", language="sw", inputs="a b c",
                                  targets="d e f")
    edit = store.add_reannotation(user_id="baraka", language="sw", parent_id=original.id,
                                  inputs="a b c d e", targets="d e f g h")
  client = client_for("chema")
  assert client.post("/vote", item_id=str(original.id), vote="up")[0] == 200
  status, body, _ = client.post("/vote", item_id=str(edit.id), vote="maybe")
  assert status == 409 and "thumbs up or thumbs down" in body
  status, body, _ = client.post("/rate", item_id=str(edit.id), action="rate")
  assert status == 409 and "from 1 to 5" in body
  assert client.post("/rate", item_id=str(edit.id), action="rate", rating="4")[0] == 200
  with Store(app.config.db) as store:
    assert [(v.item_id, v.user_id, v.up) for v in store.votes()] == [
        (original.id, "chema", True)]
    assert [(r.item_id, r.rating) for r in store.ratings()] == [(edit.id, 4)]


def test_many_contributors_at_once_lose_no_write(app):
  for n in range(8):
    add_account(app, f"user{n}")
  clients = [Client(app.url).login(f"user{n}") for n in range(8)]
  failures = []

  def contribute(n: int):
    for i in range(50):
      status, _, _ = clients[n].post("/write", prompt=f"swali {n}-{i}", completion=f"jibu {i}")
      if status != 200:
        failures.append((n, i, status))

  threads = [threading.Thread(target=contribute, args=(n,)) for n in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not failures
  items = _items(app)
  assert sorted((i.user_id, i.inputs) for i in items) == sorted(
      (f"user{n}", f"swali {n}-{i}") for n in range(8) for i in range(50))


def test_busy_port_is_a_clear_error(app, tmp_path):
  port = app.server_address[1]
  with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port}.*another --port"):
    start_app(str(tmp_path / "b.db"), host="127.0.0.1", port=port)


def test_serve_command(tmp_path):
  proc = subprocess.Popen(
      [sys.executable, "-m", "aya_t5x.cli", "annotate", "serve", "--db",
       str(tmp_path / "a.db"), "--port", "0"], stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL, text=True)
  try:
    line = proc.stdout.readline()
    url = re.search(r"http://\S+", line).group(0)
    with urllib.request.urlopen(url + "/login", timeout=30) as response:
      assert response.status == 200 and "Log in" in response.read().decode()
    with urllib.request.urlopen(url + "/static/app.js", timeout=30) as response:
      assert "function ayaEditDistance" in response.read().decode()
  finally:
    proc.terminate()
    proc.wait(timeout=30)
  assert (tmp_path / "a.db").exists()


def test_serve_refuses_a_public_url_that_is_not_an_address(tmp_path, capsys):
  from aya_t5x import cli

  assert cli.main(["annotate", "serve", "--db", str(tmp_path / "a.db"), "--port", "0",
                   "--public_url", "annotate.example.org/app"]) == 2
  assert "--public_url 'annotate.example.org/app'" in capsys.readouterr().err


def test_two_app_servers_share_one_database(db_target):
  """Behind a load balancer: a session made on one server works on the other, writes from
  both land in the one database, and a logout on one ends the session on both."""
  first, second = start_app(db_target), start_app(db_target)
  try:
    add_account(first, "amina")
    client = Client(first.url).login("amina")
    assert client.post("/write", prompt="from first", completion="x")[0] == 200
    client.base_url = second.url
    assert "amina · Swahili (sw)" in client.get("/")[1]
    assert client.post("/write", prompt="from second", completion="y")[0] == 200
    client.post("/logout")
    client.base_url = first.url
    assert 'id="login-form"' in client.get("/")[1]
  finally:
    first.shutdown()
    second.shutdown()
  with Store(db_target) as store:
    assert [(i.user_id, i.inputs) for i in store.items()] == [("amina", "from first"),
                                                             ("amina", "from second")]
