"""The annotation app's account routes: log in and out, join by invitation, change a
password, and the Invitations page of leads and admins.

Logins go through `Accounts.begin_login` (counted and throttled per client and per
account) and wait for their turn on the event loop, not on a thread; the password hash
runs on the app's password threads. Every failure is answered alike, when the client's
next turn comes. Invitation links are built from the app's public address
(`ServerConfig.public_url`), never from the request's Host header.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aya_t5x.annotation import accounts, database, forms, responses
from aya_t5x.annotation.request_checks import number

if TYPE_CHECKING:
  from aya_t5x.annotation.server import AnnotationApp

SESSION_COOKIE = "aya_session"


def invitation_link(base_url: str, token: str) -> str:
  """The sign-up link of an invitation token under the app's public address."""
  return f"{base_url.rstrip('/')}/join?token={token}"


def client_address(request: Request) -> str:
  """Who is asking, for throttling: the peer (or, from a proxy on this machine, the
  X-Forwarded-For address uvicorn put there)."""
  return request.client.host if request.client else "unknown"


class AccountRoutes:
  """Handlers of the account pages; `app` gives the accounts, config and helpers."""

  def __init__(self, app: AnnotationApp):
    self.app = app
    self.accounts = app.accounts

  async def _until(self, moment: float) -> None:
    await self.app.sleep(max(0.0, moment - time.time()))

  async def _attempt(self, user_id: str, password: str, client: str, *,
                     start_session: bool = True) -> accounts.LoginResult:
    """One throttled password check: counted, its turn awaited, hashed; a failure is
    answered at the client's next turn (the wait an attacker in parallel cannot skip)."""
    attempt = await run_in_threadpool(self.accounts.begin_login, user_id, client)
    await self._until(attempt.turn.check_at)
    result = await self.app.hashing(functools.partial(
        self.accounts.finish_login, attempt, password, start_session=start_session))
    if result.error:
      await self._until(result.answer_at)
    return result

  async def login_form(self, request: Request, form: None, csrf: str) -> Response:
    return responses.page(200, "login.html", title="Log in", csrf=csrf, user_id="")

  async def login(self, request: Request, form: dict[str, str], csrf: str) -> Response:
    user_id, password = form.get("user_id", "").strip(), form.get("password", "")
    result = await self._attempt(user_id, password, client_address(request))
    if result.token is None:
      return responses.page(401, "login.html", title="Log in", csrf=csrf, user_id=user_id,
                            error=result.error)
    response = responses.redirect("/")
    responses.set_cookie(response, request, SESSION_COOKIE, result.token,
                         max_age=int(self.app.config.policy.session_s),
                         secure=self.app.config.secure_cookies)
    return response

  async def logout(self, request: Request, session: accounts.Session, form: dict
                   ) -> Response:
    await run_in_threadpool(self.accounts.end_session, request.cookies[SESSION_COOKIE])
    response = responses.redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response

  def _join_page(self, status: int, csrf: str, token: str,
                 invitation: accounts.Invitation | None, user_id: str = "",
                 error: str | None = None) -> Response:
    return responses.page(status, "join.html", title="Join", csrf=csrf, token=token,
                          invitation=invitation, user_id=user_id, error=error,
                          min_password=accounts.MIN_PASSWORD_CHARS)

  async def join_form(self, request: Request, form: None, csrf: str) -> Response:
    token = request.query_params.get("token", "")
    invitation = await run_in_threadpool(self.accounts.invitation, token) if token else None
    return self._join_page(200 if invitation else 410, csrf, token, invitation)

  async def join(self, request: Request, form: dict[str, str], csrf: str) -> Response:
    token, user_id = form.get("token", ""), form.get("user_id", "").strip()
    invitation = await run_in_threadpool(self.accounts.invitation, token) if token else None
    try:
      if invitation is None:
        raise accounts.AccountError("this invitation link was used already or has expired")
      if invitation.user_id is None:
        forms.check_user_id(user_id)
      password = accounts.check_password(form.get("password", ""), form.get("confirm", ""),
                                         user_id=invitation.user_id or user_id)
      user_id = await self.app.hashing(functools.partial(
          self.accounts.accept_invitation, token, user_id=user_id, password=password))
    except ValueError as e:
      return self._join_page(400 if invitation else 410, csrf, token, invitation, user_id,
                             str(e))
    return responses.page(200, "login.html", title="Log in", csrf=csrf, user_id=user_id,
                          message="Your password is set. Log in with it now.")

  async def password_form(self, request: Request, session: accounts.Session, form: None
                          ) -> Response:
    return responses.page(200, "password.html", title="Change password", session=session,
                          min_password=accounts.MIN_PASSWORD_CHARS)

  async def change_password(self, request: Request, session: accounts.Session,
                            form: dict[str, str]) -> Response:
    def refuse(error: str) -> Response:
      return responses.page(400, "password.html", title="Change password", session=session,
                            min_password=accounts.MIN_PASSWORD_CHARS, error=error)

    try:
      new = accounts.check_password(form.get("password", ""), form.get("confirm", ""),
                                    user_id=session.user_id)
    except accounts.AccountError as e:
      return refuse(str(e))
    # The current password is checked as a login is (throttled), so that a stolen session
    # cannot guess it faster than a login could.
    result = await self._attempt(session.user_id, form.get("current", ""),
                                 client_address(request), start_session=False)
    if result.error:
      return refuse("the current password is not that; type it again")
    await self.app.hashing(functools.partial(
        self.accounts.set_password, session.user_id, new,
        keep_session=request.cookies[SESSION_COOKIE]))
    return responses.page(200, "password.html", title="Change password", session=session,
                          min_password=accounts.MIN_PASSWORD_CHARS,
                          message="Your password is changed; your other sessions have ended.")

  def _invitation_page(self, session: accounts.Session, links: list[str],
                       error: str | None = None, status: int = 200) -> Response:
    return responses.page(status, "invitations.html", title="Invitations", session=session,
                          links=links, roles=database.ROLES, error=error,
                          days=round(self.app.config.policy.invitation_s / 86400))

  async def invitations_form(self, request: Request, session: accounts.Session, form: None
                             ) -> Response:
    return self._invitation_page(session, [])

  async def invitations(self, request: Request, session: accounts.Session,
                        form: dict[str, str]) -> Response:
    """New sign-up links, or with `user` a password link for an existing account (how a
    lead helps a contributor who forgot their password)."""
    try:
      if form.get("user", "").strip():
        tokens = [await run_in_threadpool(functools.partial(
            self.accounts.password_link, created_by=session.user_id, creator_role=session.role,
            creator_language=session.language, user_id=form["user"].strip()))]
      else:
        count = number(form.get("count", ""), "number of links")
        if not 1 <= count <= 500:
          raise ValueError(f"create 1 to 500 links at a time, not {count}")
        language, role = session.language, "contributor"
        if session.role == "admin":  # a lead invites contributors of their own language only
          language = forms.check_language(form.get("language", "")).code
          role = form.get("role", "contributor")
        tokens = await run_in_threadpool(functools.partial(
            self.accounts.create_invitations, created_by=session.user_id, language=language,
            count=count, role=role))
    except ValueError as e:
      return self._invitation_page(session, [], error=str(e), status=400)
    return self._invitation_page(
        session, [invitation_link(self.app.public_url, t) for t in tokens])
