"""Fixtures for the annotation tests: a running app on a free port, and an HTTP client."""

import http.cookiejar
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from aya_t5x.annotation import forms, server


class Client:
  """A browser-like HTTP client (cookies, redirects followed) for one contributor."""

  def __init__(self, base_url: str):
    self.base_url = base_url
    self.opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

  def request(self, path: str, data: dict | bytes | None = None, headers: dict | None = None
              ) -> tuple[int, str, dict]:
    if isinstance(data, dict):
      data = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(self.base_url + path, data=data, headers=headers or {})
    try:
      with self.opener.open(request, timeout=60) as response:
        return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as e:
      return e.code, e.read().decode(), dict(e.headers)

  def get(self, path: str):
    return self.request(path)

  def post(self, path: str, **fields):
    return self.request(path, fields)

  def login(self, user_id: str, language: str) -> "Client":
    status, body, _ = self.post("/login", user_id=user_id, language=language)
    assert status == 200 and "Log out" in body, body
    return self


@pytest.fixture
def app(tmp_path):
  """A running app with a fresh database and small size limits; yields the server."""
  config = server.ServerConfig(db=str(tmp_path / "annotations.db"), port=0,
                               limits=forms.Limits(max_field_chars=200))
  srv = server.make_server(config)
  thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                            daemon=True)
  thread.start()
  yield srv
  srv.shutdown()
  srv.server_close()
  thread.join(timeout=10)


@pytest.fixture
def client_for(app):
  return lambda user_id, language="sw": Client(app.url).login(user_id, language)
