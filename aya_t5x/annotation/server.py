"""The annotation web app: routes, sessions, CSRF checks and submission handling (Starlette).

An ASGI app (Starlette, Jinja2 pages) served by uvicorn. Database work runs on
Starlette's thread pool through one SQLAlchemy engine per process, so that several app
processes (on one machine or behind a load balancer) can serve one PostgreSQL database;
sessions live in the database, so any process answers any request.

Security, per request (the checks themselves in `request_checks`):
- Sessions: an opaque random cookie (`aya_session`, HttpOnly, SameSite=Strict, Secure
  over HTTPS) naming a server-side session; the user id and language always come from
  it, never from a form or another cookie.
- CSRF: every POST needs a token in its form (the session's own; before login a
  double-submit cookie), and a request whose `Origin` is another site, or whose
  `Sec-Fetch-Site` says cross-site, is refused before anything is read into the store.
- Bodies: only url-encoded forms, at most `Limits.body_bytes`; an oversized one is
  refused (413) and nothing already saved is touched.
- Headers: a strict Content-Security-Policy (only the app's own script and style),
  nosniff, same-origin referrers, no caching, no framing.

Routes: `/login`, `/logout`, `/join?token=` (invitation: sign up or set a password), `/`
(counts), `/write`, `/reannotate`, `/vote`, `/rate`, `/invitations` and `/export` (language
leads and admins), `/static/*`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import http
import importlib.resources
import os
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from aya_t5x.annotation import accounts, database, export, forms, pages
from aya_t5x.annotation.request_checks import (
    SECURITY_HEADERS,
    Refused,
    check_origin,
    check_token,
    drain,
    read_form,
)
from aya_t5x.annotation.store import Store, StoreError
from aya_t5x.data import languages

_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
SESSION_COOKIE = "aya_session"
FORM_COOKIE = "aya_form"  # the double-submit CSRF token of the login and sign-up forms


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
  """Where the app listens and what it stores.

  Attributes:
    db: a SQLite file (created with its tables if new) or a postgresql:// URL.
    host, port: the address to listen on (port 0 picks a free port).
    limits: size limits of one submission.
    policy: login throttling, session and invitation lifetimes.
    secure_cookies: always mark cookies Secure (they are anyway on requests that arrive
      over HTTPS, including through a proxy that uvicorn trusts).
    pool_size: database connections each process keeps.
    export_rules: the inclusion rules of the leads' and admins' export page.
  """

  db: str
  host: str = "127.0.0.1"
  port: int = 8000
  limits: forms.Limits = dataclasses.field(default_factory=forms.Limits)
  policy: accounts.LoginPolicy = dataclasses.field(default_factory=accounts.LoginPolicy)
  secure_cookies: bool = False
  pool_size: int = 10
  export_rules: export.ExportRules = dataclasses.field(default_factory=export.ExportRules)


Handler = Callable[..., Awaitable[Response]]


class AnnotationApp:
  """The routes on one database; `starlette` is the ASGI app."""

  def __init__(self, config: ServerConfig):
    self.config = config
    self.db = database.Database(config.db, pool_size=config.pool_size)
    self.store = Store(self.db)
    self.accounts = accounts.Accounts(self.db, config.policy)
    # Password hashing (scrypt, 0.1-0.3 s of a core each) gets threads of its own, one per
    # core: a burst of logins queues there instead of taking the pool that serves pages.
    self._password_pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=os.cpu_count() or 1, thread_name_prefix="aya-password")
    get, post = ["GET", "HEAD"], ["POST"]
    routes = [
        Route("/static/{name:path}", self._static, methods=get),
        Route("/login", self._public(self._login_form), methods=get),
        Route("/login", self._public(self._login), methods=post),
        Route("/join", self._public(self._join_form), methods=get),
        Route("/join", self._public(self._join), methods=post),
        Route("/logout", self._member(self._logout), methods=post),
        Route("/", self._member(self._home), methods=get),
        Route("/write", self._member(self._write_form), methods=get),
        Route("/write", self._member(self._write), methods=post),
        Route("/reannotate", self._member(self._reannotate_form), methods=get),
        Route("/reannotate", self._member(self._reannotate), methods=post),
        Route("/vote", self._member(self._vote_form), methods=get),
        Route("/vote", self._member(self._vote), methods=post),
        Route("/rate", self._member(self._rate_form), methods=get),
        Route("/rate", self._member(self._rate), methods=post),
        Route("/invitations", self._member(self._invitations_form, lead=True), methods=get),
        Route("/invitations", self._member(self._invitations, lead=True), methods=post),
        Route("/export", self._member(self._export, lead=True), methods=get),
    ]
    self.starlette = Starlette(routes=routes, exception_handlers={
        404: self._not_found, 405: self._not_allowed}, lifespan=self._lifespan)

  @contextlib.asynccontextmanager
  async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
    yield
    self._password_pool.shutdown(wait=True)
    self.db.close()

  async def _hashing(self, function: Callable[..., Any], *args: Any) -> Any:
    """Runs an account call that hashes a password on the password threads."""
    return await asyncio.get_running_loop().run_in_executor(self._password_pool, function, *args)

  # ------------------------------------------------------------------------- plumbing

  def _page(self, status: int, template: str, *, title: str, headers: dict | None = None,
            **context: Any) -> Response:
    body = pages.render(template, title=title, **context)
    return Response(body, status, headers={**SECURITY_HEADERS, **(headers or {})},
                    media_type="text/html; charset=utf-8")

  def _message(self, status: int, text: str, session: accounts.Session | None = None
               ) -> Response:
    return self._page(status, "message.html", title=http.HTTPStatus(status).phrase, text=text,
                      link="/", session=session)

  async def _not_found(self, request: Request, exc: Exception) -> Response:
    return self._message(404, f"There is no page {request.url.path}.")

  async def _not_allowed(self, request: Request, exc: Exception) -> Response:
    return self._message(405, f"{request.method} is not allowed on {request.url.path}.")

  def _redirect(self, location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)

  def _set_cookie(self, response: Response, request: Request, name: str, value: str, *,
                  max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict",
                        secure=self.config.secure_cookies or request.url.scheme == "https")

  def _public(self, handler: Handler) -> Handler:
    """A route for people not logged in (login, sign-up), with its double-submit token."""

    async def endpoint(request: Request) -> Response:
      try:
        form = None
        if request.method == "POST":
          check_origin(request)
          form = await read_form(request, self.config.limits)
          check_token(request.cookies.get(FORM_COOKIE), form)
        token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)
        response = await handler(request, form, token)
        if FORM_COOKIE not in request.cookies:
          self._set_cookie(response, request, FORM_COOKIE, token, max_age=24 * 3600)
        return response
      except Refused as refused:
        return self._message(refused.status, refused.text)

    return endpoint

  def _member(self, handler: Handler, *, lead: bool = False) -> Handler:
    """A route for logged-in people; with `lead`, for language leads and admins only."""

    async def endpoint(request: Request) -> Response:
      session = None
      try:
        if request.method == "POST":
          check_origin(request)
        session = await run_in_threadpool(self.accounts.session,
                                          request.cookies.get(SESSION_COOKIE))
        if session is None:
          if request.method == "POST":
            await drain(request)
          return self._redirect("/login")
        if lead and session.role not in ("lead", "admin"):
          raise Refused(403, "This page is for language leads and admins.")
        form = None
        if request.method == "POST":
          form = await read_form(request, self.config.limits)
          check_token(session.csrf, form)
        return await handler(request, session, form)
      except Refused as refused:
        return self._message(refused.status, refused.text, session)

    return endpoint

  async def _static(self, request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:  # a fixed list: nothing outside static/ is ever read
      return self._message(404, f"There is no file {name}.")
    data = importlib.resources.files("aya_t5x.annotation").joinpath("static", name).read_bytes()
    return Response(data, 200, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
                    media_type=_STATIC[name])

  @staticmethod
  def _saved(request: Request) -> int | None:
    saved = request.query_params.get("saved", "")
    return int(saved) if saved.isdigit() and len(saved) < 12 else None

  @staticmethod
  def _item_id(form: dict[str, str]) -> int:
    value = form.get("item_id", "")
    if not value.isdigit() or len(value) > 12:
      raise Refused(400, "The form names no item; reload the page.")
    return int(value)

  # ------------------------------------------------------------------------- accounts

  async def _login_form(self, request: Request, form: None, csrf: str) -> Response:
    return self._page(200, "login.html", title="Log in", csrf=csrf, user_id="")

  async def _login(self, request: Request, form: dict[str, str], csrf: str) -> Response:
    user_id, password = form.get("user_id", "").strip(), form.get("password", "")
    result = await self._hashing(self.accounts.login, user_id, password)
    if result.token is None:
      await asyncio.sleep(result.delay_s)  # slows guessing; other requests go on meanwhile
      return self._page(401, "login.html", title="Log in", csrf=csrf, user_id=user_id,
                        error=result.error)
    response = self._redirect("/")
    self._set_cookie(response, request, SESSION_COOKIE, result.token,
                     max_age=int(self.config.policy.session_s))
    return response

  async def _logout(self, request: Request, session: accounts.Session, form: dict
                    ) -> Response:
    await run_in_threadpool(self.accounts.end_session, request.cookies[SESSION_COOKIE])
    response = self._redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response

  async def _join_form(self, request: Request, form: None, csrf: str) -> Response:
    token = request.query_params.get("token", "")
    invitation = await run_in_threadpool(self.accounts.invitation, token) if token else None
    return self._page(200 if invitation else 410, "join.html", title="Join", csrf=csrf,
                      token=token, invitation=invitation, user_id="",
                      min_password=accounts.MIN_PASSWORD_CHARS)

  async def _join(self, request: Request, form: dict[str, str], csrf: str) -> Response:
    token, user_id = form.get("token", ""), form.get("user_id", "").strip()
    invitation = await run_in_threadpool(self.accounts.invitation, token) if token else None
    try:
      if invitation is None:
        raise accounts.AccountError("this invitation link was used already or has expired")
      if invitation.user_id is None:
        forms.check_user_id(user_id)
      password = accounts.check_password(form.get("password", ""), form.get("confirm", ""))
      user_id = await self._hashing(functools.partial(
          self.accounts.accept_invitation, token, user_id=user_id, password=password))
    except ValueError as e:
      return self._page(400 if invitation else 410, "join.html", title="Join", csrf=csrf,
                        token=token, invitation=invitation, user_id=user_id, error=str(e),
                        min_password=accounts.MIN_PASSWORD_CHARS)
    return self._page(200, "login.html", title="Log in", csrf=csrf, user_id=user_id,
                      message="Your password is set. Log in with it now.")

  async def _invitations_form(self, request: Request, session: accounts.Session, form: None
                              ) -> Response:
    return self._invitation_page(session, [])

  def _invitation_page(self, session: accounts.Session, links: list[str],
                       error: str | None = None, status: int = 200) -> Response:
    return self._page(status, "invitations.html", title="Invitations", session=session,
                      links=links, roles=database.ROLES, error=error,
                      days=round(self.config.policy.invitation_s / 86400))

  async def _invitations(self, request: Request, session: accounts.Session,
                         form: dict[str, str]) -> Response:
    try:
      count = int(form.get("count", ""))
      if not 1 <= count <= 500:
        raise ValueError(f"create 1 to 500 links at a time, not {count}")
      language, role = session.language, "contributor"
      if session.role == "admin":  # a lead invites contributors of their own language only
        language = forms.check_language(form.get("language", "")).code
        role = form.get("role", "contributor")
      tokens = await run_in_threadpool(
          lambda: self.accounts.create_invitations(created_by=session.user_id, language=language,
                                                   count=count, role=role))
    except ValueError as e:
      return self._invitation_page(session, [], error=str(e), status=400)
    base = str(request.base_url).rstrip("/")
    return self._invitation_page(session, [invitation_link(base, t) for t in tokens])

  async def _export(self, request: Request, session: accounts.Session, form: None) -> Response:
    """The Aya Dataset records under the inclusion rules: a lead's own language, or all."""
    result = await run_in_threadpool(export.build_export, self.store,
                                     self.config.export_rules)
    records = result.records
    if session.role != "admin":
      code = languages.get_language(session.language).iso639_3
      records = [r for r in records if r["language_code"] == code]
    body = export.jsonl(records)
    name = f"aya_annotations_{session.language if session.role != 'admin' else 'all'}.jsonl"
    return Response(body, 200, media_type="application/x-ndjson", headers={
        **SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})

  # ------------------------------------------------------------------------- contributions

  async def _home(self, request: Request, session: accounts.Session, form: None) -> Response:
    counts, mine = await run_in_threadpool(
        lambda: (self.store.counts(session.language),
                 self.store.contributions_of(session.user_id)))
    return self._page(200, "home.html", title="Aya annotation", session=session,
                      counts=counts, mine=mine)

  def _write_page(self, status: int, session: accounts.Session, *, prompt: str = "",
                  completion: str = "", problems: dict | None = None,
                  message: str | None = None) -> Response:
    problems = problems or {}
    error = "Nothing was saved: " + "; ".join(problems.values()) if problems else None
    return self._page(status, "write.html", title="Write", session=session,
                      limits=self.config.limits, prompt=prompt, completion=completion,
                      problems=problems, message=message, error=error)

  async def _write_form(self, request: Request, session: accounts.Session, form: None
                        ) -> Response:
    saved = self._saved(request)
    return self._write_page(200, session, message=f"Saved your pair #{saved}. Thank you!"
                            if saved is not None else None)

  async def _write(self, request: Request, session: accounts.Session, form: dict[str, str]
                   ) -> Response:
    prompt, completion = form.get("prompt", ""), form.get("completion", "")
    try:
      prompt, completion = forms.check_pair(prompt, completion, self.config.limits)
    except forms.SubmissionError as e:
      return self._write_page(400, session, prompt=forms.normalize_text(prompt),
                              completion=forms.normalize_text(completion), problems=e.problems)
    item = await run_in_threadpool(
        lambda: self.store.add_original(user_id=session.user_id, language=session.language,
                                        inputs=prompt, targets=completion))
    return self._redirect(f"/write?saved={item.id}")

  def _reannotate_page(self, status: int, session: accounts.Session, item, *,
                       prompt: str | None = None, completion: str | None = None,
                       problems: dict | None = None, message: str | None = None,
                       error: str | None = None) -> Response:
    problems = problems or {}
    if problems:
      error = "Nothing was saved: " + "; ".join(problems.values())
    return self._page(status, "reannotate.html", title="Re-annotate", session=session,
                      limits=self.config.limits, item=item, prompt=prompt,
                      completion=completion, problems=problems, message=message, error=error)

  async def _reannotate_form(self, request: Request, session: accounts.Session, form: None
                             ) -> Response:
    saved = self._saved(request)

    def load():
      edit = self.store.get(saved) if saved is not None else None
      return edit, self.store.next_to_reannotate(session.user_id, session.language)

    edit, item = await run_in_threadpool(load)
    message = None
    if edit is not None and edit.user_id == session.user_id:
      message = (f"Saved re-annotation #{edit.id}: edit distance {edit.prompt_distance} in "
                 f"the prompt and {edit.completion_distance} in the completion.")
    return self._reannotate_page(200, session, item, message=message)

  async def _skip(self, session: accounts.Session, item_id: int, queue: str) -> Response:
    try:
      await run_in_threadpool(lambda: self.store.skip(user_id=session.user_id,
                                                      item_id=item_id, queue=queue))
    except StoreError as e:
      raise Refused(400, f"{e}; reload the page.") from None
    return self._redirect(f"/{queue}")

  async def _reannotate(self, request: Request, session: accounts.Session,
                        form: dict[str, str]) -> Response:
    item_id = self._item_id(form)
    if form.get("action") == "skip":
      return await self._skip(session, item_id, "reannotate")
    prompt, completion = form.get("prompt", ""), form.get("completion", "")
    try:
      prompt, completion = forms.check_pair(prompt, completion, self.config.limits)
      item = await run_in_threadpool(
          lambda: self.store.add_reannotation(
              user_id=session.user_id, language=session.language, parent_id=item_id,
              inputs=prompt, targets=completion))
    except forms.SubmissionError as e:
      parent = await run_in_threadpool(self.store.get, item_id)
      return self._reannotate_page(400, session, parent, prompt=forms.normalize_text(prompt),
                                   completion=forms.normalize_text(completion),
                                   problems=e.problems)
    except StoreError as e:
      following = await run_in_threadpool(self.store.next_to_reannotate, session.user_id,
                                          session.language)
      return self._reannotate_page(409, session, following, error=f"Not saved: {e}.")
    return self._redirect(f"/reannotate?saved={item.id}")

  async def _vote_form(self, request: Request, session: accounts.Session, form: None
                       ) -> Response:
    item = await run_in_threadpool(self.store.next_to_vote, session.user_id, session.language)
    message = "Vote saved. Thank you!" if self._saved(request) else None
    return self._page(200, "vote.html", title="Vote", session=session, item=item,
                      message=message)

  async def _vote(self, request: Request, session: accounts.Session, form: dict[str, str]
                  ) -> Response:
    item_id = self._item_id(form)
    choice = form.get("vote")
    if choice == "skip":
      return await self._skip(session, item_id, "vote")
    try:
      if choice not in ("up", "down"):
        raise StoreError("choose thumbs up or thumbs down")
      await run_in_threadpool(lambda: self.store.vote(
          user_id=session.user_id, language=session.language, item_id=item_id,
          up=choice == "up"))
    except StoreError as e:
      item = await run_in_threadpool(self.store.next_to_vote, session.user_id,
                                     session.language)
      return self._page(409, "vote.html", title="Vote", session=session, item=item,
                        error=f"Not saved: {e}.")
    return self._redirect("/vote?saved=1")

  async def _rate_page(self, status: int, session: accounts.Session, *,
                       message: str | None = None, error: str | None = None) -> Response:
    def load():
      item = self.store.next_to_rate(session.user_id, session.language)
      return item, self.store.get(item.parent_id) if item else None

    item, parent = await run_in_threadpool(load)
    return self._page(status, "rate.html", title="Rate", session=session, item=item,
                      parent=parent, message=message, error=error)

  async def _rate_form(self, request: Request, session: accounts.Session, form: None
                       ) -> Response:
    return await self._rate_page(200, session, message="Rating saved. Thank you!"
                                 if self._saved(request) else None)

  async def _rate(self, request: Request, session: accounts.Session, form: dict[str, str]
                  ) -> Response:
    item_id = self._item_id(form)
    if form.get("action") == "skip":
      return await self._skip(session, item_id, "rate")
    rating = form.get("rating", "")
    try:
      if rating not in ("1", "2", "3", "4", "5"):
        raise StoreError("choose a rating from 1 to 5")
      await run_in_threadpool(lambda: self.store.rate(
          user_id=session.user_id, language=session.language, item_id=item_id,
          rating=int(rating)))
    except StoreError as e:
      return await self._rate_page(409, session, error=f"Not saved: {e}.")
    return self._redirect("/rate?saved=1")


def invitation_link(base_url: str, token: str) -> str:
  """The sign-up link of an invitation token under the app's public address."""
  return f"{base_url.rstrip('/')}/join?token={token}"


class RunningServer:
  """A uvicorn server on a bound socket, run in the calling thread or a background one."""

  def __init__(self, config: ServerConfig):
    import uvicorn

    self.config = config
    self.socket = _bind(config.host, config.port)
    try:
      self.app = AnnotationApp(config)
    except BaseException:
      self.socket.close()
      raise
    self.uvicorn = uvicorn.Server(uvicorn.Config(
        self.app.starlette, log_level="warning", access_log=False, lifespan="on",
        # Behind an HTTPS proxy on this machine, requests keep their https scheme (and
        # so their Secure cookies) from X-Forwarded-Proto.
        proxy_headers=True, forwarded_allow_ips="127.0.0.1", timeout_keep_alive=30,
        h11_max_incomplete_event_size=64 * 1024, backlog=2048))
    self._thread: threading.Thread | None = None

  @property
  def server_address(self) -> tuple[str, int]:
    return self.socket.getsockname()[:2]

  @property
  def url(self) -> str:
    host, port = self.server_address
    return f"http://{host}:{port}"

  def serve_forever(self) -> None:
    """Serves in this thread until `shutdown` (or Ctrl-C in the main thread)."""
    self.uvicorn.run(sockets=[self.socket])

  def start(self) -> RunningServer:
    """Serves in a background thread; returns once the server answers."""
    self._thread = threading.Thread(target=self.serve_forever, daemon=True)
    self._thread.start()
    while not self.uvicorn.started:
      if not self._thread.is_alive():
        raise RuntimeError("the annotation server stopped while starting (see its log)")
      self._thread.join(0.01)
    return self

  def shutdown(self) -> None:
    self.uvicorn.should_exit = True
    if self._thread is not None:
      self._thread.join(timeout=30)
    self.socket.close()


def _bind(host: str, port: int) -> socket.socket:
  family = socket.AF_INET6 if ":" in host else socket.AF_INET
  sock = socket.socket(family, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    sock.bind((host, port))
    sock.listen(2048)
  except OSError as e:
    sock.close()
    raise ValueError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another "
                     "--port or --host") from None
  sock.set_inheritable(True)
  return sock


def make_server(config: ServerConfig) -> RunningServer:
  """A server bound to its port with its database open (`start` or `serve_forever` it)."""
  return RunningServer(config)


def serve(config: ServerConfig, *, announce: Callable[[str], None] = print) -> None:
  """Serves until interrupted (Ctrl-C), announcing the URL first."""
  server = make_server(config)
  announce(f"annotation app at {server.url} (database {server.app.db.name}); Ctrl-C stops it")
  try:
    server.serve_forever()
  finally:
    server.socket.close()
