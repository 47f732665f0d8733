"""The annotation web app: HTTP routes, contributor sessions and submission handling.

Standard library only: `http.server.ThreadingHTTPServer` answers each request on its own
thread, and each request opens its own `Store` connection (SQLite connections are not
shared between threads; WAL mode and the busy timeout let the writes of many
contributors queue up instead of failing).

Contributors identify by a user id kept in a cookie; there are no passwords. Run it for
a trusted team, or behind a proxy that authenticates people (and terminates TLS).

Routes: `/login`, `/logout`, `/` (counts), `/write` (original pairs), `/reannotate`
(edit a pair of your language, live edit distance), `/vote` (thumbs up/down), `/rate`
(1-5 on re-annotations), `/static/*`. A refused submission (empty or over the size
limit) comes back with a message and the contributor's text in the form; nothing
already saved is touched.
"""

from __future__ import annotations

import dataclasses
import http
import importlib.resources
import sys
import urllib.parse
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aya_t5x.annotation import forms, pages
from aya_t5x.annotation.store import Store, StoreError

USER_COOKIE = "aya_user"
LANGUAGE_COOKIE = "aya_language"
_COOKIE_AGE_S = 60 * 60 * 24 * 90
_DRAIN_LIMIT = 64 << 20  # an oversized body is read and dropped up to this, then cut off
_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = {
    # Only the app's own script and style file run or apply; inline script, event
    # attributes and foreign images in contributor text would be refused even unescaped.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
  """Where the app listens and what it stores.

  Attributes:
    db: the SQLite database file (created with its tables if new).
    host, port: the address to listen on (port 0 picks a free port).
    limits: size limits of one submission.
    secure_cookies: mark the login cookie Secure (set when served over HTTPS).
  """

  db: str
  host: str = "127.0.0.1"
  port: int = 8000
  limits: forms.Limits = dataclasses.field(default_factory=forms.Limits)
  secure_cookies: bool = False


class AnnotationServer(ThreadingHTTPServer):
  """A threading HTTP server that carries its `ServerConfig` for the handlers."""

  daemon_threads = True
  request_queue_size = 128  # many contributors saving at the same moment

  def __init__(self, config: ServerConfig):
    self.config = config
    Store(config.db).close()  # creates the tables, and fails here on a bad path
    super().__init__((config.host, config.port), Handler)

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://{host}:{port}"


class _Refused(Exception):
  """A request answered with an error page (status and text) instead of its route."""

  def __init__(self, status: int, text: str):
    super().__init__(text)
    self.status = status
    self.text = text


class Handler(BaseHTTPRequestHandler):
  """Routes one request; a fresh instance (and thread) per connection."""

  server: AnnotationServer
  server_version = "aya-t5x-annotate"
  timeout = 60  # a stalled client frees its thread

  # ------------------------------------------------------------------------- plumbing

  def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
    # One plain line per request on stderr, without the client address.
    print(f"{self.log_date_time_string()} {format % args}", file=sys.stderr)

  def _send(self, status: int, body: str | bytes, *, content_type: str =
            "text/html; charset=utf-8", headers: dict[str, str] | None = None) -> None:
    data = body.encode("utf-8") if isinstance(body, str) else body
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(data)))
    for name, value in {**_SECURITY_HEADERS, **(headers or {})}.items():
      self.send_header(name, value)
    self.end_headers()
    if self.command != "HEAD":
      self.wfile.write(data)

  def _redirect(self, location: str, cookies: list[str] = ()) -> None:
    self.send_response(http.HTTPStatus.SEE_OTHER)
    self.send_header("Location", location)
    self.send_header("Content-Length", "0")
    for cookie in cookies:
      self.send_header("Set-Cookie", cookie)
    self.end_headers()

  def _cookie(self, name: str, value: str, *, expire: bool = False) -> str:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict",
             f"Max-Age={0 if expire else _COOKIE_AGE_S}"]
    if self.server.config.secure_cookies:
      parts.append("Secure")
    return "; ".join(parts)

  def _session(self) -> tuple[str, str] | None:
    """(user id, language code) from the cookies, or None when not logged in."""
    try:
      jar = SimpleCookie(self.headers.get("Cookie", ""))
    except CookieError:
      return None
    if USER_COOKIE not in jar or LANGUAGE_COOKIE not in jar:
      return None
    try:
      user_id = forms.check_user_id(jar[USER_COOKIE].value)
      language = forms.check_language(jar[LANGUAGE_COOKIE].value).code
    except ValueError:
      return None
    return user_id, language

  def _read_form(self) -> dict[str, str]:
    """The url-encoded form of a POST, refusing oversized or malformed bodies unsaved."""
    kind = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
      raise _Refused(415, "The app takes form submissions "
                          "(application/x-www-form-urlencoded); nothing was saved.")
    try:
      length = int(self.headers.get("Content-Length", ""))
    except ValueError:
      raise _Refused(411, "The submission had no Content-Length; nothing was saved.") from None
    limit = self.server.config.limits.body_bytes
    if length > limit:
      self._drain(length)
      chars = self.server.config.limits.max_field_chars
      raise _Refused(413, f"The submission is {length:,} bytes, more than the {limit:,} "
                          f"the app accepts (at most {chars:,} characters per field). Nothing "
                          "was saved: go back, shorten the text and save again.")
    raw = self.rfile.read(length)
    try:
      fields = urllib.parse.parse_qs(raw.decode("utf-8"), keep_blank_values=True,
                                     max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as e:
      raise _Refused(400, f"The submission could not be read ({e}); nothing was saved.") \
          from None
    return {name: values[-1] for name, values in fields.items()}

  def _drain(self, length: int) -> None:
    # Reading the refused body lets the browser see the answer instead of a reset.
    if length > _DRAIN_LIMIT:
      self.close_connection = True
      return
    while length > 0:
      chunk = self.rfile.read(min(length, 1 << 16))
      if not chunk:
        break
      length -= len(chunk)

  def _route(self, table: dict[str, Callable[..., None]], needs_login: bool = True) -> None:
    path = urllib.parse.urlsplit(self.path).path
    try:
      if path.startswith("/static/") and self.command in ("GET", "HEAD"):
        self._static(path.removeprefix("/static/"))
        return
      handler = table.get(path)
      if handler is None:
        raise _Refused(404, f"There is no page {path}.")
      if path == "/login":
        handler()
        return
      session = self._session()
      if session is None:
        if self.command == "POST":
          self._read_form()  # read before answering, so the browser sees the redirect
        self._redirect("/login")
        return
      with Store(self.server.config.db) as store:
        handler(store, *session)
    except _Refused as refused:
      self._send(refused.status, pages.message_page(
          http.HTTPStatus(refused.status).phrase, refused.text))

  def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
    self._route({"/": self._home, "/login": self._login_form, "/write": self._write_form,
                 "/reannotate": self._reannotate_form, "/vote": self._vote_form,
                 "/rate": self._rate_form})

  do_HEAD = do_GET  # noqa: N815

  def do_POST(self) -> None:  # noqa: N802
    self._route({"/login": self._login, "/logout": self._logout, "/write": self._write,
                 "/reannotate": self._reannotate, "/vote": self._vote, "/rate": self._rate})

  def _static(self, name: str) -> None:
    if name not in _STATIC:
      raise _Refused(404, f"There is no file {name}.")
    data = importlib.resources.files("aya_t5x.annotation").joinpath("static", name).read_bytes()
    self._send(200, data, content_type=_STATIC[name])

  def _query(self, name: str) -> str | None:
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get(name)
    return values[-1] if values else None

  def _saved_message(self, what: str) -> str | None:
    saved = self._query("saved")
    return f"Saved {what} #{saved}. Thank you!" if saved and saved.isdigit() else None

  @staticmethod
  def _item_id(form: dict[str, str]) -> int:
    try:
      return int(form.get("item_id", ""))
    except ValueError:
      raise _Refused(400, "The form names no item; reload the page.") from None

  # ------------------------------------------------------------------------- login

  def _login_form(self) -> None:
    self._send(200, pages.login_page())

  def _login(self) -> None:
    form = self._read_form()
    user_id, language = form.get("user_id", ""), form.get("language", "")
    try:
      user_id = forms.check_user_id(user_id)
      code = forms.check_language(language).code
    except ValueError as e:
      self._send(400, pages.login_page(user_id=user_id, language=language, error=str(e)))
      return
    with Store(self.server.config.db) as store:
      store.touch_contributor(user_id, code)
    self._redirect("/", [self._cookie(USER_COOKIE, user_id),
                         self._cookie(LANGUAGE_COOKIE, code)])

  def _logout(self, store: Store, user_id: str, language: str) -> None:
    self._read_form()
    self._redirect("/login", [self._cookie(USER_COOKIE, "", expire=True),
                              self._cookie(LANGUAGE_COOKIE, "", expire=True)])

  def _home(self, store: Store, user_id: str, language: str) -> None:
    self._send(200, pages.home_page(user_id=user_id, language=language,
                                    counts=store.counts(language),
                                    mine=store.contributions_of(user_id)))

  # ------------------------------------------------------------------------- write

  def _write_form(self, store: Store, user_id: str, language: str) -> None:
    self._send(200, pages.write_page(user_id=user_id, language=language,
                                     limits=self.server.config.limits,
                                     message=self._saved_message("your pair")))

  def _write(self, store: Store, user_id: str, language: str) -> None:
    form = self._read_form()
    prompt, completion = form.get("prompt", ""), form.get("completion", "")
    try:
      prompt, completion = forms.check_pair(prompt, completion, self.server.config.limits)
    except forms.SubmissionError as e:
      self._send(400, pages.write_page(
          user_id=user_id, language=language, limits=self.server.config.limits,
          prompt=forms.normalize_text(prompt), completion=forms.normalize_text(completion),
          problems=e.problems))
      return
    item = store.add_original(user_id=user_id, language=language, inputs=prompt,
                              targets=completion)
    self._redirect(f"/write?saved={item.id}")

  # ------------------------------------------------------------------------- re-annotate

  def _reannotate_form(self, store: Store, user_id: str, language: str) -> None:
    message = None
    saved = self._query("saved")
    if saved and saved.isdigit() and (item := store.get(int(saved))) is not None:
      message = (f"Saved re-annotation #{item.id}: edit distance {item.prompt_distance} in "
                 f"the prompt and {item.completion_distance} in the completion.")
    self._send(200, pages.reannotate_page(
        user_id=user_id, language=language, limits=self.server.config.limits,
        item=store.next_to_reannotate(user_id, language), message=message))

  def _reannotate(self, store: Store, user_id: str, language: str) -> None:
    form = self._read_form()
    item_id = self._item_id(form)
    if form.get("action") == "skip":
      self._skip(store, user_id, item_id, "reannotate")
      return
    prompt, completion = form.get("prompt", ""), form.get("completion", "")
    parent = store.get(item_id)
    try:
      prompt, completion = forms.check_pair(prompt, completion, self.server.config.limits)
      item = store.add_reannotation(user_id=user_id, language=language, parent_id=item_id,
                                    inputs=prompt, targets=completion)
    except forms.SubmissionError as e:
      self._send(400, pages.reannotate_page(
          user_id=user_id, language=language, limits=self.server.config.limits,
          item=parent, prompt=forms.normalize_text(prompt),
          completion=forms.normalize_text(completion), problems=e.problems))
      return
    except StoreError as e:
      self._send(409, pages.reannotate_page(
          user_id=user_id, language=language, limits=self.server.config.limits,
          item=store.next_to_reannotate(user_id, language), error=f"Not saved: {e}."))
      return
    self._redirect(f"/reannotate?saved={item.id}")

  def _skip(self, store: Store, user_id: str, item_id: int, queue: str) -> None:
    try:
      store.skip(user_id=user_id, item_id=item_id, queue=queue)
    except StoreError as e:
      raise _Refused(400, f"{e}; reload the page.") from None
    self._redirect(f"/{queue}")

  # ------------------------------------------------------------------------- vote and rate

  def _vote_form(self, store: Store, user_id: str, language: str) -> None:
    message = "Vote saved. Thank you!" if self._query("saved") else None
    self._send(200, pages.vote_page(user_id=user_id, language=language,
                                    item=store.next_to_vote(user_id, language),
                                    message=message))

  def _vote(self, store: Store, user_id: str, language: str) -> None:
    form = self._read_form()
    item_id = self._item_id(form)
    choice = form.get("vote")
    if choice == "skip":
      self._skip(store, user_id, item_id, "vote")
      return
    try:
      if choice not in ("up", "down"):
        raise StoreError("choose thumbs up or thumbs down")
      store.vote(user_id=user_id, language=language, item_id=item_id, up=choice == "up")
    except StoreError as e:
      self._send(409, pages.vote_page(user_id=user_id, language=language,
                                      item=store.next_to_vote(user_id, language),
                                      error=f"Not saved: {e}."))
      return
    self._redirect("/vote?saved=1")

  def _rate_form(self, store: Store, user_id: str, language: str) -> None:
    message = "Rating saved. Thank you!" if self._query("saved") else None
    item = store.next_to_rate(user_id, language)
    self._send(200, pages.rate_page(
        user_id=user_id, language=language, item=item,
        parent=store.get(item.parent_id) if item else None, message=message))

  def _rate(self, store: Store, user_id: str, language: str) -> None:
    form = self._read_form()
    item_id = self._item_id(form)
    if form.get("action") == "skip":
      self._skip(store, user_id, item_id, "rate")
      return
    rating = form.get("rating", "")
    try:
      if rating not in ("1", "2", "3", "4", "5"):
        raise StoreError("choose a rating from 1 to 5")
      store.rate(user_id=user_id, language=language, item_id=item_id, rating=int(rating))
    except StoreError as e:
      item = store.next_to_rate(user_id, language)
      self._send(409, pages.rate_page(
          user_id=user_id, language=language, item=item,
          parent=store.get(item.parent_id) if item else None, error=f"Not saved: {e}."))
      return
    self._redirect("/rate?saved=1")


def make_server(config: ServerConfig) -> AnnotationServer:
  """A bound server (call `serve_forever`, and `shutdown` from another thread)."""
  try:
    return AnnotationServer(config)
  except OSError as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise ValueError(f"cannot listen on {config.host}:{config.port} ({e.strerror or e}); "
                     "choose another --port or --host") from None


def serve(config: ServerConfig, *, announce: Callable[[str], None] = print) -> None:
  """Serves until interrupted (Ctrl-C), announcing the URL first."""
  server = make_server(config)
  announce(f"annotation app at {server.url} (database {config.db}); Ctrl-C stops it")
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
