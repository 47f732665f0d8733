"""What every request of the annotation app must pass: body limits and read time, NUL
bytes, origin, CSRF token, and the security headers every answer carries.

A check that fails raises `Refused` with the HTTP status and the text to show; nothing
has been written by then, so a refused request loses nothing already saved.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import urllib.parse

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aya_t5x.annotation import forms

_DRAIN_LIMIT = 64 << 20  # an oversized body is read and dropped up to this, then cut off
SECURITY_HEADERS = {
    # Only the app's own script and style file run or apply; inline script, event
    # attributes and foreign images in contributor text would be refused even unescaped.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


_NUMBER = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit also takes '²', which int refuses


class Refused(Exception):
  """A request answered with an error page (status and text) instead of its route.

  `close`: the connection is closed after the answer (a body that was not read whole).
  """

  def __init__(self, status: int, text: str, *, close: bool = False):
    super().__init__(text)
    self.status = status
    self.text = text
    self.close = close


class SecurityHeaders:
  """ASGI middleware: every answer carries the security headers, whatever built it (a
  route, Starlette's 404/405/500 handling, the allowed-hosts check)."""

  def __init__(self, app: ASGIApp):
    self.app = app

  async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
      await self.app(scope, receive, send)
      return

    async def send_with_headers(message: Message) -> None:
      if message["type"] == "http.response.start":
        present = {name.lower() for name, _ in message.get("headers", [])}
        missing = [(name.lower().encode(), value.encode())
                   for name, value in SECURITY_HEADERS.items()
                   if name.lower().encode() not in present]
        message = {**message, "headers": [*message.get("headers", []), *missing]}
      await send(message)

    await self.app(scope, receive, send_with_headers)


def number(value: str, what: str) -> int:
  """A whole number from a form or query value (ASCII digits), or a 400 naming `what`."""
  if not _NUMBER.fullmatch(value):
    raise Refused(400, f"The request names no valid {what} ({value[:20]!r}); reload the "
                       "page.")
  return int(value)


async def read_form(request: Request, limits: forms.Limits, *, timeout_s: float = 30.0
                    ) -> dict[str, str]:
  """The url-encoded form of a POST, refusing oversized, slow, malformed or NUL-holding
  bodies unsaved."""
  try:
    async with asyncio.timeout(timeout_s):
      fields = await _read_form(request, limits)
  except TimeoutError:
    raise Refused(408, f"The submission did not arrive within {timeout_s:g} s; nothing was "
                       "saved. Send it again.", close=True) from None
  for name, value in fields.items():
    if "\x00" in name or "\x00" in value:
      # PostgreSQL cannot store NUL in text, and no form field of the app holds one.
      raise Refused(400, f"The field {name.replace(chr(0), '')!r} holds a NUL character "
                         "(\\0), which no text here may contain; nothing was saved.")
  return fields


async def _read_form(request: Request, limits: forms.Limits) -> dict[str, str]:
  kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
  limit = limits.body_bytes
  too_big = Refused(413, f"The submission is larger than the {limit:,} bytes the app accepts "
                         f"(at most {limits.max_field_chars:,} characters per field). Nothing "
                         "was saved: go back, shorten the text and save again.", close=True)
  declared = request.headers.get("content-length")
  if declared is not None and (not (declared.isascii() and declared.isdigit())
                               or int(declared) > limit):
    await drain(request)
    raise too_big
  raw = bytearray()
  async for chunk in request.stream():
    raw += chunk
    if len(raw) > limit:  # a chunked body without a length
      await drain(request, len(raw))
      raise too_big
  if kind != "application/x-www-form-urlencoded":
    raise Refused(415, "The app takes form submissions (application/x-www-form-urlencoded); "
                       "nothing was saved.")
  try:
    fields = urllib.parse.parse_qs(bytes(raw).decode("utf-8"), keep_blank_values=True,
                                   max_num_fields=16)
  except (UnicodeDecodeError, ValueError) as e:
    raise Refused(400, f"The submission could not be read ({e}); nothing was saved.") \
        from None
  return {name: values[-1] for name, values in fields.items()}


async def drain(request: Request, read: int = 0) -> None:
  """Reads and drops a body that is refused: the browser then sees the answer, not a reset."""
  try:
    async for chunk in request.stream():
      read += len(chunk)
      if read > _DRAIN_LIMIT:
        break
  except RuntimeError:  # the stream was consumed already
    pass


def check_origin(request: Request) -> None:
  """Refuses a POST that a browser says came from another site."""
  site = request.headers.get("sec-fetch-site")
  origin = request.headers.get("origin")
  foreign = site is not None and site not in ("same-origin", "none")
  if origin == "null":  # sandboxed frames, some redirects: never the app's own page
    foreign = True
  elif origin is not None:
    foreign = foreign or urllib.parse.urlsplit(origin).netloc != request.headers.get("host")
  if foreign:
    raise Refused(403, "This form was sent from another site; nothing was saved. Open the "
                       "page of the annotation app itself and send it from there.")


def check_token(expected: str | None, form: dict[str, str]) -> None:
  """Refuses a form without the CSRF token it was served with."""
  given = form.get("csrf", "")
  if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
    raise Refused(403, "This form is out of date or was not sent from the app's own page; "
                       "nothing was saved. Reload the page and send it again.")
