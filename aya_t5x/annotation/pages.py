"""The HTML pages of the annotation app: Jinja2 templates with every value escaped.

Pages are plain server-rendered forms, so that they work without JavaScript and a
refused submission comes back with the contributor's text in place. `static/app.js` adds
the live edit distance and character counters. The environment autoescapes every value
(`& < > " '`) in every template, and nothing is ever put into a script, a style or an
event attribute; the server's Content-Security-Policy runs only the app's own script
file, so even a template mistake could not run contributor text.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2

from aya_t5x.data import languages

MIN_EDIT_DISTANCE = 5  # what the export's inclusion rule asks of a re-annotation


def language_label(code: str) -> str:
  language = languages.find_language(code)
  return f"{language.name} ({code})" if language else code


@functools.cache
def _environment() -> jinja2.Environment:
  env = jinja2.Environment(
      loader=jinja2.PackageLoader("aya_t5x.annotation", "templates"),
      autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
  env.filters["language_label"] = language_label
  return env


def render(template: str, *, title: str, **context: Any) -> str:
  """One whole page. `session` (a logged-in person) adds the navigation bar."""
  context.setdefault("session", None)
  context.setdefault("message", None)
  context.setdefault("error", None)
  return _environment().get_template(template).render(
      title=title, min_edit_distance=MIN_EDIT_DISTANCE, **context)

