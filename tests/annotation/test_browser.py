"""The annotation app end to end in headless Chromium (Debian's, driven by Playwright).

Starts the app on a free port with a fresh database, then acts as a new contributor:
opens an invitation link made by `aya-t5x annotate invite`, signs up, logs in, writes a
pair, submits an empty form (error, text kept, nothing lost), re-annotates a seeded pair
while the live edit distance updates, meets a hostile contribution shown as text, votes,
rates, logs out (the session is gone), and finally exports the Aya Dataset records.
"""

import json
import os
import random
import shutil

import pytest

from aya_t5x import cli
from aya_t5x.annotation.edit_distance import levenshtein
from aya_t5x.annotation.store import Store

from .conftest import PASSWORD

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags a sandboxed, offline machine needs (no GPU, no sandbox as root, no calls home).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]
ATTACK = '<script>alert(1)</script><img src=x onerror="alert(2)">'

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason="Debian's chromium is not installed: `apt-get install chromium` (.ci/run does it)")


@pytest.fixture
def browser():
  from playwright.sync_api import sync_playwright

  with sync_playwright() as playwright:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


def test_contributor_session_end_to_end(app, browser, tmp_path):
  with Store(app.config.db) as store:
    store.add_seeds([("sw", "Mji mkuu wa Tanzania ni upi?", "Dodoma", "seed.jsonl:1"),
                     ("sw", "Taja rangi tatu.", "Nyekundu, bluu, kijani.", "seed.jsonl:2")])
    hostile = store.add_original(user_id="mallory", language="sw", inputs=ATTACK,
                                 targets=ATTACK)
    second_seed = [i for i in store.items() if i.kind == "seed"][1]
    edit = store.add_reannotation(user_id="baraka", language="sw", parent_id=second_seed.id,
                                  inputs="Taja rangi tatu za bendera.",
                                  targets="Nyekundu, bluu na kijani.")
  page = browser.new_page()
  page.set_default_timeout(15_000)
  dialogs = []
  page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

  # An invitation link, as a language lead makes them.
  links = tmp_path / "links.txt"
  assert cli.main(["annotate", "invite", "--db", app.config.db, "--language", "Swahili",
                   "--url", app.url, "--output", str(links)]) == 0
  link = links.read_text().strip()
  assert oct(links.stat().st_mode & 0o777) == "0o600"

  # Sign up through it: a too-short password is refused, the user id kept.
  page.goto(link)
  assert "Swahili (sw)" in page.inner_text("main")
  page.fill("#user_id", "amina")
  page.fill("#password", "short")
  page.fill("#confirm", "short")
  page.click("#join")
  assert "at least 10" in page.inner_text("#error")
  assert page.input_value("#user_id") == "amina"
  page.fill("#password", PASSWORD)
  page.fill("#confirm", PASSWORD)
  page.click("#join")
  assert "Log in with it now" in page.inner_text("#message")
  page.goto(link)  # the link worked once
  assert "used already" in page.inner_text("#error-text")

  # Log in; the page shows who and which language.
  page.goto(app.url + "/write")
  page.fill("#user_id", "amina")
  page.fill("#password", "not the password")
  page.click("#login")
  assert "wrong user id or password" in page.inner_text("#error")
  page.fill("#password", PASSWORD)
  page.click("#login")
  assert "amina · Swahili (sw)" in page.inner_text("nav")

  # An original pair; the counter follows the typing.
  page.click("text=Write")
  page.fill("#prompt", "Habari ya asubuhi?")
  assert page.inner_text("#count-prompt") == "18"
  page.fill("#completion", "Nzuri sana, asante.")
  page.click("#save")
  assert "Saved your pair" in page.inner_text("#message")

  # An empty completion: refused with a message, the prompt kept, nothing lost.
  page.fill("#prompt", "Swali bila jibu")
  page.fill("#completion", "")
  page.click("#save")
  assert "the completion is empty" in page.inner_text("#error")
  assert page.input_value("#prompt") == "Swali bila jibu"
  with Store(app.config.db) as store:
    assert [i.inputs for i in store.items() if i.user_id == "amina"] == ["Habari ya asubuhi?"]

  # Re-annotate the first seed; the distances update as she types.
  page.click("text=Re-annotate")
  assert page.inner_text("#original-prompt") == "Mji mkuu wa Tanzania ni upi?"
  assert page.inner_text("#distance-total") == "0"
  page.locator("#prompt").press("End")
  page.locator("#prompt").press_sequentially(" Eleza")
  assert page.inner_text("#distance-prompt") == "6"
  assert "enough" in page.get_attribute("#distance-total", "class")
  page.fill("#completion", "Dodoma ni mji mkuu.")
  shown = int(page.inner_text("#distance-completion"))
  assert shown == levenshtein("Dodoma", "Dodoma ni mji mkuu.")
  # The page's algorithm equals the server's on random text in several scripts.
  rng = random.Random(0)
  pairs = [("".join(rng.choice("ab 😀é\nሰ") for _ in range(rng.randint(0, 30))),
            "".join(rng.choice("ab 😀é\nሰ") for _ in range(rng.randint(0, 30))))
           for _ in range(60)]
  in_page = page.evaluate("pairs => pairs.map(([a, b]) => window.ayaEditDistance(a, b))", pairs)
  assert in_page == [levenshtein(a, b) for a, b in pairs]
  page.click("#save")
  assert "edit distance 6 in the prompt and " f"{shown} in the completion" in page.inner_text(
      "#message")

  # Next in her queue: the hostile pair, shown as text, never run.
  assert page.inner_text("#original-prompt") == ATTACK
  assert page.input_value("#prompt") == ATTACK
  assert page.locator("img").count() == 0
  page.click("#skip")

  # Votes: thumbs down on the hostile pair, up on baraka's re-annotation.
  page.click("text=Vote")
  assert ATTACK in page.inner_text("main")
  page.click("#vote-down")
  assert "Vote saved" in page.inner_text("#message")
  assert "Taja rangi tatu za bendera." in page.inner_text("main")
  page.click("#vote-up")

  # Rate baraka's re-annotation 4 of 5, seeing before and after.
  page.click("text=Rate")
  assert "Before: existing pair" in page.inner_text("main")
  page.check("#rating-4")
  page.click("#save")
  assert "Rating saved" in page.inner_text("#message")
  assert page.locator("#empty-queue").count() == 1
  assert dialogs == []

  # Log out: back to the login page, and the session is gone on the server too.
  cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "aya_session")
  page.click("#logout")
  assert page.locator("#login-form").count() == 1
  page.goto(app.url + "/rate")
  assert page.locator("#login-form").count() == 1
  assert app.app.accounts.session(cookie) is None

  with Store(app.config.db) as store:
    assert {(v.item_id, v.up) for v in store.votes()} == {(hostile.id, False), (edit.id, True)}
    assert [(r.item_id, r.user_id, r.rating) for r in store.ratings()] == [(edit.id, "amina", 4)]
  output = tmp_path / "aya.jsonl"
  assert cli.main(["annotate", "export", "--db", app.config.db, "--output", str(output),
                   "--min_language_contributions", "1"]) == 0
  records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
  assert {(r["user_id"], r["annotation_type"], r["inputs"]) for r in records} == {
      ("mallory", "original-annotations", ATTACK),
      ("amina", "original-annotations", "Habari ya asubuhi?"),
      ("amina", "re-annotations", "Mji mkuu wa Tanzania ni upi? Eleza"),
      ("baraka", "re-annotations", "Taja rangi tatu za bendera.")}
