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

from aya_t5x.annotation import accounts, database, throttle
from aya_t5x.annotation.store import Store

from .conftest import PASSWORD, TEST_POLICY, Client, add_account, start_app

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


def test_password_guessing_is_slowed(tmp_path):
  """Each failure in a row waits longer, and the answer comes only when the wait is over.

  The delays (0.5 s and up) are longer than a test hash takes even on a busy machine, so
  an answer that did not wait would arrive before its turn and fail the check.
  """


  policy = accounts.LoginPolicy(throttle=throttle.ThrottlePolicy(delay_s=0.5, max_delay_s=2),
                                scrypt_n=2**10)
  srv = start_app(str(tmp_path / "t.db"), policy=policy)
  turns, returned = [], []
  begin = srv.app.accounts.begin_login

  def counted(*args):
    attempt = begin(*args)
    turns.append(attempt.turn)
    returned.append(time.time())
    return attempt

  srv.app.accounts.begin_login = counted
  try:
    add_account(srv, "amina")
    attacker = Client(srv.url, address="203.0.113.9")
    attacker.get("/login")
    for n in range(1, 5):
      status, body, _ = attacker.post("/login", user_id="amina", password=f"guess {n}")
      answered = time.time()
      assert status == 401 and "wrong user id or password" in body
      turn = turns[-1]
      assert not turn.throttled
      assert turn.answer_at - turn.check_at == policy.throttle.delay(n)  # 0.5, 1, 2, 2 s
      assert answered >= turn.answer_at  # the route waited for the client's next turn
    assert [policy.throttle.delay(n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 2.0]
    # After its answer, the same client's next attempt is checked at once: a person
    # retyping never meets the throttle; the right password gets in.
    attacker.login("amina")
    assert turns[-1].check_at <= returned[-1]  # its turn had come when it was counted
  finally:
    srv.shutdown()
  with Store(srv.config.db) as store, store.db.read() as conn:
    actions = conn.execute(sa.select(database.audit.c.action).where(
        database.audit.c.user_id == "amina")).scalars().all()
  assert actions[-5:] == ["login-failed"] * 4 + ["login"]


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
                  completion=payload.replace("\u0000", ""))
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


# --------------------------------------------------------------------- issue 24's weaknesses

def _error(body: str) -> str:
  """The text of a page's error paragraph."""
  match = re.search(r'id="error(?:-text)?">(.*?)</p>', body, re.S)
  return html.unescape(match.group(1)) if match else ""


def test_guessing_cannot_lock_the_owner_out(app):
  add_account(app, "amina")
  attacker = Client(app.url, address="203.0.113.66")
  attacker.get("/login")
  for n in range(8):
    status, body, _ = attacker.post("/login", user_id="amina", password=f"guess {n}")
    assert status == 401 and _error(body) == "wrong user id or password"
  # The right password from a client that has not failed gets in, however many failures
  # the account has from elsewhere.
  Client(app.url, address="198.51.100.5").login("amina")
  # The owner after a typo of their own: slowed down, never refused.
  typo = Client(app.url, address="198.51.100.6")
  typo.get("/login")
  assert typo.post("/login", user_id="amina", password="typo")[0] == 401
  typo.login("amina")


def test_a_lead_issues_a_password_link_for_a_contributor(app, client_for):
  add_account(app, "amina", "sw")
  add_account(app, "bola", "yo")
  add_account(app, "boss", "sw", "admin")
  lead = client_for("lead", "sw", "lead")
  status, body, _ = lead.post("/invitations", user="amina")
  links = re.findall(r"<code>([^<]+)</code>", body)
  assert status == 200 and len(links) == 1, body
  token = html.unescape(links[0]).split("token=")[1]
  assert app.app.accounts.invitation(token).user_id == "amina"
  # Not for another language's account, an admin, or nobody: one answer for all three.
  refusals = set()
  for user_id in ("bola", "boss", "ghost"):
    status, body, _ = lead.post("/invitations", user=user_id)
    assert status == 400 and not re.findall(r"<code>", body)
    refusals.add(_error(body).replace(user_id, "ID"))
  assert len(refusals) == 1
  # The link sets amina's password, which ends any throttling of her account.
  newcomer = Client(app.url)
  newcomer.get(f"/join?token={token}")
  status, body, _ = newcomer.post("/join", token=token, password="a new pass phrase 42",
                                  confirm="a new pass phrase 42")
  assert status == 200 and "Log in with it now" in body
  Client(app.url).login("amina", "a new pass phrase 42")


def test_every_login_failure_answers_alike_with_the_same_work(tmp_path, monkeypatch):
  # One attempt at once per client and turns 1 s apart, at most 2 s ahead: of 12 parallel
  # guesses from one address, most are throttled however slowly the threads start.
  policy = accounts.LoginPolicy(
      throttle=throttle.ThrottlePolicy(delay_s=1, max_delay_s=2, parallel=1), scrypt_n=2**10)
  app = start_app(str(tmp_path / "alike.db"), policy=policy)
  try:
    _answers_alike(app, monkeypatch)
  finally:
    app.shutdown()


def _answers_alike(app, monkeypatch):
  import hashlib
  import threading

  add_account(app, "amina")
  hashes = []
  scrypt = hashlib.scrypt
  monkeypatch.setattr(hashlib, "scrypt", lambda *a, **k: hashes.append(k["n"]) or scrypt(*a, **k))
  answers = []
  for user_id, address in (("nobody", "192.0.2.1"), ("amina", "192.0.2.2")):
    client = Client(app.url, address=address)
    client.get("/login")
    hashes.clear()
    status, body, _ = client.post("/login", user_id=user_id, password="wrong guess")
    answers.append((status, _error(body)))
    assert hashes == [TEST_POLICY.scrypt_n]  # one hash of the production cost each
  # A client guessing in parallel is throttled: the same answer, the same hash each.
  hashes.clear()
  results = []

  def guess(n: int) -> None:
    client = Client(app.url, address="192.0.2.3")
    client.get("/login")
    status, body, _ = client.post("/login", user_id="amina", password=f"guess {n}")
    results.append((status, _error(body)))

  threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert set(answers) == set(results) == {(401, "wrong user id or password")}
  assert hashes == [TEST_POLICY.scrypt_n] * 12
  actions = [a for _, _, a, _ in app.app.accounts.audit_log()]
  assert "login-throttled" in actions  # the flood did reach the throttle


def test_items_of_other_languages_stay_hidden(app, client_for):
  with Store(app.config.db) as store:
    secret = store.add_original(user_id="bola", language="yo", inputs="SECRET PROMPT",
                                targets="SECRET ANSWER")
    store.add_seeds([("yo", "SEED TEXT", "x", "private_seeds.jsonl:1")])
    seed = next(i for i in store.items() if i.kind == "seed")
    edit = store.add_reannotation(user_id="dayo", language="yo", parent_id=seed.id,
                                  inputs="SEED TEXT EDITED", targets="y")
  amina = client_for("amina", "sw")
  missing = 10**6
  forms_to_try = [("/reannotate", {"action": "save", "prompt": "", "completion": ""}),
                  ("/reannotate", {"action": "skip"}), ("/vote", {"vote": "up"}),
                  ("/vote", {"vote": "skip"}), ("/rate", {"action": "rate", "rating": "3"}),
                  ("/rate", {"action": "skip"})]
  for path, fields in forms_to_try:
    for item_id in (secret.id, seed.id, edit.id):
      answers = []
      for target in (item_id, missing):
        status, body, _ = amina.post(path, item_id=str(target), **fields)
        assert "SECRET" not in body and "SEED TEXT" not in body
        assert "bola" not in body and "dayo" not in body and "private_seeds" not in body
        answers.append((status, _error(body).replace(str(target), "N")))
      assert answers[0] == answers[1], (path, fields)
  with Store(app.config.db) as store:
    assert store.votes() == [] and store.ratings() == []
    assert len(store.items()) == 3


def test_unicode_digits_are_a_clean_400_with_the_headers(app, client_for, server_log):
  from aya_t5x.annotation.request_checks import SECURITY_HEADERS

  amina = client_for("amina")
  digits = [urllib.parse.quote(d) for d in ("²", "١", "²")]  # superscript, Arabic-Indic
  requests = [(f"/write?saved={digits[0]}", None), (f"/reannotate?saved={digits[2]}", None),
              (f"/vote?saved={digits[1]}", None), (f"/rate?saved={digits[0]}", None),
              ("/vote", {"item_id": "²", "vote": "up"}),
              ("/rate", {"item_id": "²", "action": "rate", "rating": "3"}),
              ("/reannotate", {"item_id": "²", "action": "save", "prompt": "p",
                               "completion": "c"}),
              ("/reannotate", {"item_id": "٣", "action": "skip"})]
  for path, form in requests:
    if form is None:
      status, body, headers = amina.get(path)
    else:
      status, body, headers = amina.post(path, **form)
    assert status == 400, (path, body)
    assert {h: headers[h] for h in SECURITY_HEADERS} == SECURITY_HEADERS, path
  assert [r.getMessage() for r in server_log] == []


def test_errors_keep_the_security_headers(app, client_for, monkeypatch, server_log):
  from aya_t5x.annotation.request_checks import SECURITY_HEADERS

  amina = client_for("amina")

  def broken(*args, **kwargs):
    raise RuntimeError("a bug")

  monkeypatch.setattr(app.app.store, "counts", broken)
  for path, headers in (("/", {}), ("/nowhere", {}), ("/login", {"Host": "evil.example"})):
    status, body, response_headers = amina.request(path, headers=headers)
    assert status in (400, 404, 500), path
    assert {h: response_headers[h] for h in SECURITY_HEADERS} == SECURITY_HEADERS, path
    assert "a bug" not in body
  assert any("a bug" in str(r.exc_info) for r in server_log)  # a real bug is still logged


def test_common_passwords_and_the_user_id_are_refused(app):
  token, = app.app.accounts.create_invitations(created_by="lead", language="sw")
  newcomer = Client(app.url)
  newcomer.get(f"/join?token={token}")
  for password, why in (("password1234", "easy to guess"), ("qwertyuiop12", "easy to guess"),
                        ("iloveyou2024", "easy to guess"), ("Amina.Mwangi", "user id"),
                        ("my name is amina.mwangi!", "user id")):
    status, body, _ = newcomer.post("/join", token=token, user_id="amina.mwangi",
                                    password=password, confirm=password)
    assert status == 400 and why in _error(body), (password, _error(body))
  status, body, _ = newcomer.post("/join", token=token, user_id="amina.mwangi",
                                  password=PASSWORD, confirm=PASSWORD)
  assert status == 200
  # User ids are unique regardless of case.
  second, = app.app.accounts.create_invitations(created_by="lead", language="sw")
  other = Client(app.url)
  other.get(f"/join?token={second}")
  status, body, _ = other.post("/join", token=second, user_id="Amina.Mwangi",
                               password=PASSWORD, confirm=PASSWORD)
  assert status == 400 and "taken" in _error(body)


def test_a_person_changes_their_password(app, client_for):
  amina = client_for("amina")
  elsewhere = Client(app.url).login("amina")
  status, body, _ = amina.get("/password")
  assert status == 200 and 'id="password-form"' in body
  new = "tea with cardamom at noon"
  status, body, _ = amina.post("/password", current="wrong password", password=new,
                               confirm=new)
  assert status == 400 and "current password" in _error(body)
  status, body, _ = amina.post("/password", current=PASSWORD, password="password1234",
                               confirm="password1234")
  assert status == 400 and "easy to guess" in _error(body)
  status, body, _ = amina.post("/password", current=PASSWORD, password=new, confirm=new)
  assert status == 200 and "changed" in body
  assert "Log out" in amina.get("/")[1]  # this session goes on
  assert 'id="login-form"' in elsewhere.get("/")[1]  # the others end
  assert Client(app.url).request("/login")[0] == 200
  Client(app.url).login("amina", new)


def test_the_host_header_is_not_trusted(app, client_for):
  client = Client(app.url)
  status, body, _ = client.request("/login", headers={"Host": "evil.example"})
  assert status == 400 and "Log in" not in body
  lead = client_for("lead", "sw", "lead")
  status, body, _ = lead.request(
      "/invitations", urllib.parse.urlencode({"count": "1", "csrf": lead.csrf}).encode(),
      headers={"Host": "evil.example"})
  assert "evil.example" not in body and status == 400
  # No redirect names a host (Starlette's slash redirects would build one from Host).
  opener = urllib.request.build_opener(_NoRedirect)
  try:
    opener.open(urllib.request.Request(app.url + "/write/"), timeout=30)
  except urllib.error.HTTPError as e:
    assert e.code == 404 and "Location" not in e.headers


def test_links_use_the_public_url(tmp_path, client_for):
  srv = start_app(str(tmp_path / "p.db"), public_url="https://annotate.example.org",
                  allowed_hosts=("127.0.0.1", "localhost", "annotate.example.org"))
  try:
    add_account(srv, "lead", "sw", "lead")
    lead = Client(srv.url).login("lead")
    port = srv.server_address[1]
    status, body, _ = lead.request(
        "/invitations", urllib.parse.urlencode({"count": "1", "csrf": lead.csrf}).encode(),
        headers={"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"})
    links = [html.unescape(link) for link in re.findall(r"<code>([^<]+)</code>", body)]
    assert status == 200 and links[0].startswith("https://annotate.example.org/join?token=")
  finally:
    srv.shutdown()


def test_a_nul_byte_is_a_clean_400_on_every_store(db_target, server_log):
  srv = start_app(db_target)
  try:
    add_account(srv, "amina")
    client = Client(srv.url).login("amina")
    status, body, _ = client.post("/write", prompt="swali\x00", completion="jibu")
    assert status == 400 and "NUL" in body
    stranger = Client(srv.url)
    stranger.get("/login")
    status, body, _ = stranger.post("/login", user_id="amina\x00", password="x\x00y")
    assert status == 400 and "NUL" in body
    token, = srv.app.accounts.create_invitations(created_by="lead", language="sw")
    newcomer = Client(srv.url)
    newcomer.get(f"/join?token={token}")
    status, body, _ = newcomer.post("/join", token=token, user_id="ne\x00ema",
                                    password=PASSWORD, confirm=PASSWORD)
    assert status == 400 and "NUL" in body
    assert client.post("/write", prompt="swali", completion="jibu")[0] == 200
  finally:
    srv.shutdown()
  with Store(db_target) as store:
    assert [i.inputs for i in store.items()] == ["swali"]
  assert [r.getMessage() for r in server_log] == []


def _raw_exchange(url: str, data: bytes, *, wait_s: float = 30) -> bytes:
  """Sends `data` on a fresh connection and reads until the server closes it."""
  import socket

  host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
  with socket.create_connection((host, port), timeout=wait_s) as sock:
    received = b""
    try:
      sock.sendall(data)
      while chunk := sock.recv(65536):
        received += chunk
    except ConnectionResetError:  # what arrived before the reset is the answer
      pass
  return received


def test_slow_and_idle_clients_are_cut_off(tmp_path):
  import socket

  srv = start_app(str(tmp_path / "s.db"), body_timeout_s=0.5, keep_alive_s=1, max_connections=3)
  try:
    assert srv.uvicorn.config.timeout_keep_alive == 1
    # A body that never arrives: answered 408 and closed (not held open).
    answer = _raw_exchange(srv.url, b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: application/x-www-form-urlencoded\r\n"
                           b"Content-Length: 100\r\n\r\nuser_id=a")
    assert answer.startswith(b"HTTP/1.1 408 ") and b"content-security-policy" in answer.lower()
    # An idle connection after its answer is closed by the server.
    answer = _raw_exchange(srv.url, b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    # A head that keeps growing past the limit (16 KiB) without ending: refused, not
    # buffered on (a complete head arrives in one read and is parsed whole).
    answer = _raw_exchange(srv.url, b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                           + b"a" * 20_000)
    assert answer.startswith(b"HTTP/1.1 400 ")
    # Connections beyond max_connections: 503 rather than an endless queue.
    port = srv.server_address[1]
    held = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
    try:
      for sock in held:
        sock.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # never ends
      answer = _raw_exchange(srv.url, b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Connection: close\r\n\r\n")
      assert answer.startswith(b"HTTP/1.1 503 ")
    finally:
      for sock in held:
        sock.close()
  finally:
    srv.shutdown()
