"""The annotation web app: its configuration, the guards every route passes, the route
table, and the uvicorn server (Starlette).

An ASGI app (Starlette, Jinja2 pages) served by uvicorn. Database work runs on
Starlette's thread pool through one SQLAlchemy engine per process, so that several app
processes (on one machine or behind a load balancer) can serve one PostgreSQL database;
sessions live in the database, so any process answers any request. The handlers are in
`account_routes` (login, sign-up, passwords, invitations) and `contribution_routes`
(writing, re-annotating, voting, rating, export).

Security, per request (the checks themselves in `request_checks`):
- Hosts: only the allowed Host names are served (Starlette's TrustedHostMiddleware);
  links and redirects never use the Host header (links use `public_url`, redirects are
  paths).
- Sessions: an opaque random cookie (`aya_session`, HttpOnly, SameSite=Strict, Secure
  over HTTPS) naming a server-side session; the user id and language always come from
  it, never from a form or another cookie.
- CSRF: every POST needs a token in its form (the session's own; before login a
  double-submit cookie), and a request whose `Origin` is another site, or whose
  `Sec-Fetch-Site` says cross-site, is refused before anything is read into the store.
- Bodies: only url-encoded forms, at most `Limits.body_bytes`, arriving within
  `body_timeout_s`, without NUL; anything else is refused and nothing already saved is
  touched.
- Headers: a strict Content-Security-Policy (only the app's own script and style),
  nosniff, same-origin referrers, no caching, no framing, on every answer, errors too.
- Slow clients: uvicorn closes idle connections after `keep_alive_s`, answers 503 beyond
  `max_connections`, and refuses headers over `max_header_bytes`.

Routes: `/login`, `/logout`, `/join?token=` (invitation: sign up or set a password),
`/password` (change it), `/` (counts), `/write`, `/reannotate`, `/vote`, `/rate`,
`/invitations` and `/export` (language leads and admins), `/static/*`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib.resources
import os
import secrets
import socket
import threading
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aya_t5x.annotation import accounts, database, export, forms, responses
from aya_t5x.annotation.account_routes import SESSION_COOKIE, AccountRoutes
from aya_t5x.annotation.contribution_routes import ContributionRoutes
from aya_t5x.annotation.request_checks import (
    SECURITY_HEADERS,
    Refused,
    SecurityHeaders,
    check_origin,
    check_token,
    drain,
    read_form,
)
from aya_t5x.annotation.store import Store

_STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
FORM_COOKIE = "aya_form"  # the double-submit CSRF token of the login and sign-up forms
LOCAL_HOSTS = ("127.0.0.1", "localhost")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
  """Where the app listens, what it stores, and what it accepts.

  Attributes:
    db: a SQLite file (created with its tables if new) or a postgresql:// URL.
    host, port: the address to listen on (port 0 picks a free port).
    public_url: the address people open (`https://annotate.example.org`): invitation
      links are built on it. Without it, the address the server listens on.
    allowed_hosts: Host header values served (names, `*.example.org` patterns); others
      get a 400. Empty: public_url's host and 127.0.0.1 / localhost.
    limits: size limits of one submission.
    policy: login throttling, session and invitation lifetimes.
    secure_cookies: always mark cookies Secure (they are anyway on requests that arrive
      over HTTPS, including through a proxy that uvicorn trusts).
    pool_size: database connections each process keeps.
    export_rules: the inclusion rules of the leads' and admins' export page.
    keep_alive_s: an idle connection is closed after this long (uvicorn's
      timeout_keep_alive).
    body_timeout_s: a form body must arrive within this long, else 408 and the
      connection closes.
    max_connections: connections and requests in progress beyond this get 503 (uvicorn's
      limit_concurrency).
    max_header_bytes: the most bytes of a request's head (h11's incomplete event limit).
  """

  db: str
  host: str = "127.0.0.1"
  port: int = 8000
  public_url: str | None = None
  allowed_hosts: tuple[str, ...] = ()
  limits: forms.Limits = dataclasses.field(default_factory=forms.Limits)
  policy: accounts.LoginPolicy = dataclasses.field(default_factory=accounts.LoginPolicy)
  secure_cookies: bool = False
  pool_size: int = 10
  export_rules: export.ExportRules = dataclasses.field(default_factory=export.ExportRules)
  keep_alive_s: float = 5.0
  body_timeout_s: float = 30.0
  max_connections: int = 1000
  max_header_bytes: int = 16 * 1024

  def __post_init__(self):
    if self.public_url is not None:
      parts = urllib.parse.urlsplit(self.public_url)
      if parts.scheme not in ("http", "https") or not parts.hostname or \
          parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"--public_url {self.public_url!r}: give the address people open, "
                         "as scheme and host, e.g. https://annotate.example.org")
    for name in ("keep_alive_s", "body_timeout_s", "max_connections", "max_header_bytes"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

  def hosts(self) -> list[str]:
    """The Host names served: the allowed hosts, or public_url's host and this machine."""
    if self.allowed_hosts:
      return list(self.allowed_hosts)
    hosts = list(LOCAL_HOSTS)
    if self.public_url:
      hosts.append(urllib.parse.urlsplit(self.public_url).hostname)
    if self.host not in ("0.0.0.0", "::", "") and self.host not in hosts:
      hosts.append(self.host)
    return hosts


Handler = Callable[..., Awaitable[Response]]


class AnnotationApp:
  """The routes on one database; `starlette` is the ASGI app.

  Args:
    config: the server's configuration.
    public_url: the base of invitation links when `config.public_url` is not set (the
      server's own listening address).
  """

  def __init__(self, config: ServerConfig, *, public_url: str | None = None):
    self.config = config
    self.public_url = (config.public_url or public_url or
                       f"http://{config.host}:{config.port}").rstrip("/")
    self.db = database.Database(config.db, pool_size=config.pool_size)
    self.store = Store(self.db)
    self.accounts = accounts.Accounts(self.db, config.policy)
    # Waits of the login throttling (a hook, so tests can see them without timing).
    self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Password hashing (scrypt, 0.1-0.3 s of a core each) gets threads of its own, one per
    # core: a burst of logins queues there instead of taking the pool that serves pages.
    self._password_pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=os.cpu_count() or 1, thread_name_prefix="aya-password")
    people, work = AccountRoutes(self), ContributionRoutes(self)
    public, member = self._public, self._member
    get, post = ["GET", "HEAD"], ["POST"]
    routes = [
        Route("/static/{name:path}", self._static, methods=get),
        Route("/login", public(people.login_form), methods=get),
        Route("/login", public(people.login), methods=post),
        Route("/join", public(people.join_form), methods=get),
        Route("/join", public(people.join), methods=post),
        Route("/logout", member(people.logout), methods=post),
        Route("/password", member(people.password_form), methods=get),
        Route("/password", member(people.change_password), methods=post),
        Route("/invitations", member(people.invitations_form, lead=True), methods=get),
        Route("/invitations", member(people.invitations, lead=True), methods=post),
        Route("/", member(work.home), methods=get),
        Route("/write", member(work.write_form), methods=get),
        Route("/write", member(work.write), methods=post),
        Route("/reannotate", member(work.reannotate_form), methods=get),
        Route("/reannotate", member(work.reannotate), methods=post),
        Route("/vote", member(work.vote_form), methods=get),
        Route("/vote", member(work.vote), methods=post),
        Route("/rate", member(work.rate_form), methods=get),
        Route("/rate", member(work.rate), methods=post),
        Route("/export", member(work.export, lead=True), methods=get),
    ]
    self.starlette = Starlette(
        routes=routes, lifespan=self._lifespan,
        middleware=[Middleware(SecurityHeaders),
                    Middleware(TrustedHostMiddleware, allowed_hosts=config.hosts(),
                               www_redirect=False)],
        exception_handlers={404: self._not_found, 405: self._not_allowed,
                            Exception: self._server_error})
    # Starlette would answer /write/ with a redirect to an absolute URL built from Host.
    self.starlette.router.redirect_slashes = False

  @contextlib.asynccontextmanager
  async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
    yield
    self._password_pool.shutdown(wait=True)
    self.db.close()

  async def hashing(self, function: Callable[..., Any], *args: Any) -> Any:
    """Runs an account call that hashes a password on the password threads."""
    return await asyncio.get_running_loop().run_in_executor(self._password_pool, function, *args)

  # ------------------------------------------------------------------------- guards

  async def _not_found(self, request: Request, exc: Exception) -> Response:
    return responses.message(404, f"There is no page {request.url.path}.")

  async def _not_allowed(self, request: Request, exc: Exception) -> Response:
    return responses.message(405, f"{request.method} is not allowed on {request.url.path}.")

  async def _server_error(self, request: Request, exc: Exception) -> Response:
    # A bug: the page says nothing of it (uvicorn logs the traceback).
    return responses.message(500, "Something went wrong on the server; nothing more was "
                                  "saved than the page said. Try again, or tell your lead.")

  def _refusal(self, refused: Refused, session: accounts.Session | None = None) -> Response:
    return responses.message(refused.status, refused.text, session,
                             headers={"Connection": "close"} if refused.close else None)

  def _public(self, handler: Handler) -> Handler:
    """A route for people not logged in (login, sign-up), with its double-submit token."""

    async def endpoint(request: Request) -> Response:
      try:
        form = None
        if request.method == "POST":
          check_origin(request)
          form = await read_form(request, self.config.limits,
                                 timeout_s=self.config.body_timeout_s)
          check_token(request.cookies.get(FORM_COOKIE), form)
        token = request.cookies.get(FORM_COOKIE) or secrets.token_urlsafe(32)
        response = await handler(request, form, token)
        if FORM_COOKIE not in request.cookies:
          responses.set_cookie(response, request, FORM_COOKIE, token, max_age=24 * 3600,
                               secure=self.config.secure_cookies)
        return response
      except Refused as refused:
        return self._refusal(refused)

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
          return responses.redirect("/login")
        if lead and session.role not in ("lead", "admin"):
          raise Refused(403, "This page is for language leads and admins.")
        form = None
        if request.method == "POST":
          form = await read_form(request, self.config.limits,
                                 timeout_s=self.config.body_timeout_s)
          check_token(session.csrf, form)
        return await handler(request, session, form)
      except Refused as refused:
        return self._refusal(refused, session)

    return endpoint

  async def _static(self, request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _STATIC:  # a fixed list: nothing outside static/ is ever read
      return responses.message(404, f"There is no file {name}.")
    data = importlib.resources.files("aya_t5x.annotation").joinpath("static", name).read_bytes()
    return Response(data, 200, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"},
                    media_type=_STATIC[name])


class RunningServer:
  """A uvicorn server on a bound socket, run in the calling thread or a background one."""

  def __init__(self, config: ServerConfig):
    import uvicorn

    self.config = config
    self.socket = _bind(config.host, config.port)
    try:
      self.app = AnnotationApp(config, public_url=self.url)
    except BaseException:
      self.socket.close()
      raise
    self.uvicorn = uvicorn.Server(uvicorn.Config(
        self.app.starlette, log_level="warning", access_log=False, lifespan="on",
        # Behind an HTTPS proxy on this machine, requests keep their https scheme (and
        # so their Secure cookies) from X-Forwarded-Proto, and their client address
        # (for login throttling) from X-Forwarded-For.
        proxy_headers=True, forwarded_allow_ips="127.0.0.1",
        # Slow clients on a bare port (docs/annotation.md, "HTTPS proxy"): idle
        # connections close, connections beyond the limit get 503, heads are bounded.
        timeout_keep_alive=config.keep_alive_s,  # type: ignore[arg-type] (used as a float)
        limit_concurrency=config.max_connections,
        h11_max_incomplete_event_size=config.max_header_bytes,
        timeout_graceful_shutdown=30, backlog=2048))
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
  announce(f"annotation app at {server.url} (database {server.app.db.name}; invitation links "
           f"on {server.app.public_url}; hosts served: {', '.join(config.hosts())}); "
           "Ctrl-C stops it")
  try:
    server.serve_forever()
  finally:
    server.socket.close()
