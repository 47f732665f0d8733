"""The answers the annotation app's routes build: pages, messages, redirects, cookies.

Every one carries the security headers (`request_checks.SECURITY_HEADERS`; the
`SecurityHeaders` middleware adds them to anything else, errors included). Redirects name
a path only, never a host: the Host header is not the app's address.
"""

from __future__ import annotations

import http
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aya_t5x.annotation import accounts, pages
from aya_t5x.annotation.request_checks import SECURITY_HEADERS


def page(status: int, template: str, *, title: str, headers: dict | None = None,
         **context: Any) -> Response:
  """A whole HTML page from a template (every value escaped)."""
  body = pages.render(template, title=title, **context)
  return Response(body, status, headers={**SECURITY_HEADERS, **(headers or {})},
                  media_type="text/html; charset=utf-8")


def message(status: int, text: str, session: accounts.Session | None = None, *,
            headers: dict | None = None) -> Response:
  """A page that says one thing (errors, refusals), with a link home."""
  return page(status, "message.html", title=http.HTTPStatus(status).phrase, text=text,
              link="/", session=session, headers=headers)


def redirect(path: str) -> Response:
  """A 303 to a path of this app (relative: no host is ever put in a Location)."""
  if not path.startswith("/") or path.startswith("//"):
    raise ValueError(f"redirects go to a path of the app, not {path!r}")
  return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)


def set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int,
               secure: bool) -> None:
  """An HttpOnly, SameSite=Strict cookie, Secure when asked or over HTTPS."""
  response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                      samesite="strict", secure=secure or request.url.scheme == "https")
