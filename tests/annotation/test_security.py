"""The app under attack: stolen, forged and replayed sessions, cross-site posts, password
guessing, reused invitations, injection and script payloads, path traversal, huge bodies."""

import html
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import markupsafe
import sqlalchemy as sa

from aya_t5x.annotation import database
from aya_t5x.annotation.store import Store

from .conftest import PASSWORD, TEST_POLICY, Client, add_account

PAYLOADS = ["'); DROP TABLE items; --", "\" OR \"1\"=\"1", "1 OR 1=1; DELETE FROM votes",
            "<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "\"><svg onload=alert(3)>",
            "{{ 7*7 }}{% raw %}", "&lt;b&gt; &amp; \u202e\u0000"]


def _items(app):
  with Store(app.config.db) as store:
    return store.items()


def _textarea(body: str, name: str) -> str:
  match = re.search(rf'<textarea[^>]* name="{name}"[^>]*>\n(.*?)</textarea>', body, re.S)
  return html.unescape(match.group(1))


def test_forged_and_replayed_cookies_get_nothing(app, client_for):
  victim = client_for("victim")
  victim.post("/write", prompt="mine", completion="mine")
  stolen = victim.cookie("aya_session")
  # A made-up session, and the old app's user id cookie, are nobody.
  for cookie in ("aya_session=" + "A" * 43, "aya_user=victim; aya_language=sw"):
    status, body, _ = Client(app.url).request("/", headers={"Cookie": cookie})
    assert 'id="login-form"' in body and "victim" not in body
  # While it lives, the stolen cookie works; after the victim logs out it is dead.
  replay = Client(app.url)
  assert "victim ·" in replay.request("/", headers={"Cookie": f"aya_session={stolen}"})[1]
  csrf = replay.csrf
  victim.post("/logout")
  status, body, _ = replay.request("/", headers={"Cookie": f"aya_session={stolen}"})
  assert 'id="login-form"' in body
  status, body, _ = replay.request(
      "/write", {"prompt": "forged", "completion": "forged", "csrf": csrf},
      headers={"Cookie": f"aya_session={stolen}"})
  assert 'id="login-form"' in body
  assert [i.inputs for i in _items(app)] == ["mine"]


def test_a_form_cannot_act_as_another_user(app, client_for):
  with Store(app.config.db) as store:
    theirs = store.add_original(user_id="victim", language="sw", inputs="q", targets="a")
  mallory = client_for("mallory")
  other = client_for("other")
  # Another user's id in the form is ignored: the session says who writes.
  mallory.post("/write", prompt="p", completion="c", user_id="victim", language="yo")
  mallory.post("/vote", item_id=str(theirs.id), vote="up", user_id="victim")
  # Another session's CSRF token does not pass with mallory's cookie.
  status, body, _ = mallory.post("/write", prompt="x", completion="y", csrf=other.csrf)
  assert status == 403 and "nothing was saved" in body
  with Store(app.config.db) as store:
    assert [(i.user_id, i.language, i.inputs) for i in store.items()][1:] == [
        ("mallory", "sw", "p")]
    assert [(v.user_id, v.item_id) for v in store.votes()] == [("mallory", theirs.id)]


def test_cross_site_posts_are_refused(app, client_for):
  client = client_for("amina")
  cross_site = [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                {"Origin": "null"}]
  form = urllib.parse.urlencode({"prompt": "p", "completion": "c", "csrf": client.csrf}).encode()
  for headers in cross_site:
    status, body, _ = client.request("/write", form, headers=headers)
    assert status == 403 and "another site" in body
  status, body, _ = client.post("/write", prompt="p", completion="c", csrf="")
  assert status == 403 and "out of date" in body
  assert _items(app) == []
  # The same form from the app's own origin is saved.
  status, _, _ = client.request("/write", form, headers={"Origin": app.url,
                                                         "Sec-Fetch-Site": "same-origin"})
  assert status == 200 and len(_items(app)) == 1
  # Login needs the form's own token too (no logging people in from another site).
  add_account(app, "baraka")
  fresh = Client(app.url)
  status, body, _ = fresh.post("/login", user_id="baraka", password=PASSWORD)
  assert status == 403 and fresh.cookie("aya_session") is None


def test_password_guessing_is_slowed_then_locked(app):
  add_account(app, "amina")
  attacker = Client(app.url)
  attacker.get("/login")
  waits = []
  for n in range(TEST_POLICY.max_failures):
    start = time.perf_counter()
    status, body, _ = attacker.post("/login", user_id="amina", password=f"guess {n}")
    waits.append(time.perf_counter() - start)
    assert status == 401 and "wrong user id or password" in body
  expected = [min(TEST_POLICY.delay_s * n, TEST_POLICY.max_delay_s)
              for n in range(1, TEST_POLICY.max_failures + 1)]
  assert all(w >= e for w, e in zip(waits, expected, strict=True))
  status, body, _ = attacker.post("/login", user_id="amina", password=PASSWORD)
  assert status == 401 and "locked" in body and attacker.cookie("aya_session") is None
  with Store(app.config.db) as store, store.db.read() as conn:
    actions = conn.execute(sa.select(database.audit.c.action).where(
        database.audit.c.user_id == "amina")).scalars().all()
  assert actions[-2:] == ["lock", "login-locked"]


def test_an_invitation_link_works_once(app):
  token, = app.app.accounts.create_invitations(created_by="lead", language="sw")
  newcomer = Client(app.url)
  status, body, _ = newcomer.get(f"/join?token={token}")
  assert status == 200 and "Swahili (sw)" in body
  status, body, _ = newcomer.post("/join", token=token, user_id="neema", password="short",
                                  confirm="short")
  assert status == 400 and "at least 10" in body and 'value="neema"' in body
  status, body, _ = newcomer.post("/join", token=token, user_id="neema", password=PASSWORD,
                                  confirm=PASSWORD)
  assert status == 200 and "Log in with it now" in body
  again = Client(app.url)
  assert again.get(f"/join?token={token}")[0] == 410
  # Sent again from the page that used it: refused, no second account.
  status, body, _ = newcomer.post("/join", token=token, user_id="second", password=PASSWORD,
                                  confirm=PASSWORD)
  assert status == 410 and "used already" in body
  assert app.app.accounts.role_of("second") is None
  Client(app.url).login("neema")


def test_injection_and_script_payloads_are_stored_as_text_and_shown_escaped(app, client_for):
  author = client_for("author")
  for payload in PAYLOADS:
    text = payload.replace("\u0000", "")  # NUL is no text a textarea sends
    status, body, _ = author.post("/write", prompt=text, completion=text + "!")
    assert status == 200, body
  reviewer = client_for("reviewer")
  stored = [(i.inputs, i.targets) for i in _items(app)]
  assert stored == [(p.replace("\u0000", ""), p.replace("\u0000", "") + "!") for p in PAYLOADS]
  status, body, _ = reviewer.get("/reannotate")
  assert _textarea(body, "prompt") == PAYLOADS[0]
  # Every payload comes back as text in the re-annotation form, the tables intact.
  for payload in PAYLOADS:
    status, body, _ = reviewer.get("/reannotate")
    text = _textarea(body, "prompt")
    assert text in [p.replace("\u0000", "") for p in PAYLOADS]  # {{ 7*7 }} stays literal
    assert "<script>alert" not in body and "<img src=x" not in body and "<svg" not in body
    item_id = re.search(r'name="item_id" value="(\d+)"', body).group(1)
    reviewer.post("/reannotate", item_id=item_id, action="save", prompt=text + " edited",
                  completion=payload)
  edits = [i for i in _items(app) if i.kind == "reannotation"]
  assert len(edits) == len(PAYLOADS)
  # Payloads in ids, votes, ratings and login fields are refused as values, never run.
  for payload in PAYLOADS[:3]:
    assert reviewer.post("/vote", item_id=payload, vote="up")[0] == 400
    assert reviewer.post("/vote", item_id=str(edits[0].id), vote=payload)[0] == 409
    assert reviewer.post("/rate", item_id=str(edits[0].id), action="rate",
                         rating=payload)[0] == 409
    stranger = Client(app.url)
    stranger.get("/login")
    status, body, _ = stranger.post("/login", user_id=payload, password=payload)
    assert status == 401 and f'value="{markupsafe.escape(payload)}"' in body
  with Store(app.config.db) as store:
    assert len(store.items()) == 2 * len(PAYLOADS) and store.votes() == []


def test_static_files_stay_in_their_folder(app):
  client = Client(app.url)
  assert "function ayaEditDistance" in client.get("/static/app.js")[1]
  for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fstore.py",
               "/static/%2e%2e%2f%2e%2e%2fsetup.py", "/static/templates/base.html",
               "/static//etc/passwd", "/static/app.js%00.py", "/static/.%2e/pages.py"):
    status, body, _ = client.get(path)
    assert status == 404, path
    assert "import " not in body and "root:" not in body and "{%" not in body


def test_oversized_bodies_are_refused_and_lose_nothing(app, client_for):
  client = client_for("amina")
  client.post("/write", prompt="saved", completion="work")
  before = _items(app)
  huge = b"prompt=" + b"a" * (app.config.limits.body_bytes + 1) + b"&completion=b"
  for path in ("/write", "/login", "/vote"):
    status, body, _ = client.request(path, huge)
    assert status == 413 and "Nothing was saved" in body
  status, body, _ = client.request("/write", b"x=1", headers={"Content-Type": "text/plain"})
  assert status == 415
  assert _items(app) == before
  assert "Log out" in client.get("/")[1]  # the session survived


def test_roles_limit_invitations_and_exports(app, client_for):
  contributor = client_for("amina", "sw")
  assert contributor.get("/invitations")[0] == 403
  assert contributor.get("/export")[0] == 403
  lead = client_for("lead", "sw", "lead")
  # A lead's form asks for admins in Yoruba; the lead gets Swahili contributors.
  status, body, _ = lead.post("/invitations", count="2", language="yo", role="admin")
  links = re.findall(r"<code>([^<]+)</code>", body)
  assert status == 200 and len(links) == 2 and links[0].startswith(app.url + "/join?token=")
  invitation = app.app.accounts.invitation(html.unescape(links[0]).split("token=")[1])
  assert (invitation.language, invitation.role) == ("sw", "contributor")
  with Store(app.config.db) as store:
    for n in range(3):
      store.add_original(user_id="amina", language="sw", inputs=f"sw {n}", targets="x")
      store.add_original(user_id="bola", language="yo", inputs=f"yo {n}", targets="x")
  status, body, headers = lead.get("/export")
  assert status == 200 and "attachment" in headers["Content-Disposition"]
  records = [json.loads(line) for line in body.splitlines()]
  assert sorted(r["inputs"] for r in records) == ["sw 0", "sw 1", "sw 2"]  # Swahili only
  status, body, _ = client_for("root", "en", "admin").get("/export")
  assert len(body.splitlines()) == 6
  admin = Client(app.url).login("root")
  status, body, _ = admin.post("/invitations", count="1", language="Yoruba", role="lead")
  token = html.unescape(re.findall(r"<code>([^<]+)</code>", body)[0]).split("token=")[1]
  invitation = app.app.accounts.invitation(token)
  assert (invitation.language, invitation.role) == ("yo", "lead")


def test_cookies_are_secure_behind_an_https_proxy(app):
  add_account(app, "amina")
  client = Client(app.url)
  client.request("/login", headers={"X-Forwarded-Proto": "https"})
  form = urllib.parse.urlencode({"user_id": "amina", "password": PASSWORD,
                                 "csrf": client.csrf}).encode()
  request = urllib.request.Request(app.url + "/login", data=form,
                                   headers={"X-Forwarded-Proto": "https",
                                            "Cookie": f"aya_form={client.cookie('aya_form')}"})
  opener = urllib.request.build_opener(_NoRedirect)
  try:
    opener.open(request, timeout=30)
  except urllib.error.HTTPError as e:
    cookie = e.headers["Set-Cookie"]
  assert "aya_session=" in cookie
  assert all(flag in cookie.lower() for flag in ("httponly", "samesite=strict", "secure"))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
  def redirect_request(self, *args, **kwargs):
    return None
