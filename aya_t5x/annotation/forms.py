"""Checks on what contributors submit: user ids, languages and prompt/completion text.

The web app and `aya-t5x annotate import` share these rules, so that a pair refused in
the browser is refused in a file too, with the same message.
"""

from __future__ import annotations

import dataclasses
import re

from aya_t5x.data import languages

USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")


class SubmissionError(ValueError):
  """Submitted text that cannot be saved; `problems` maps each bad field to why."""

  def __init__(self, problems: dict[str, str]):
    self.problems = dict(problems)
    super().__init__("; ".join(f"{field}: {why}" for field, why in self.problems.items()))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Limits:
  """Size limits of one submission.

  Attributes:
    max_field_chars: the most characters (code points) a prompt or a completion may have.
    max_body_bytes: the most bytes of one form submission the server reads; larger ones
      are refused unread. By default room for two full fields of 4-byte characters,
      percent-encoded (3 bytes each), plus the other form fields.
  """

  max_field_chars: int = 8000
  max_body_bytes: int | None = None

  def __post_init__(self):
    if self.max_field_chars < 1:
      raise ValueError(f"max_field_chars must be at least 1, got {self.max_field_chars}")
    if self.max_body_bytes is not None and self.max_body_bytes < 1024:
      raise ValueError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")

  @property
  def body_bytes(self) -> int:
    if self.max_body_bytes is not None:
      return self.max_body_bytes
    return 2 * self.max_field_chars * 4 * 3 + 4096


def normalize_text(text: str) -> str:
  """Line breaks as `\\n`: browsers send a textarea's breaks as CRLF but show them as LF,
  and the live edit distance is computed on what the page shows."""
  return text.replace("\r\n", "\n").replace("\r", "\n")


def check_pair(prompt: str, completion: str, limits: Limits) -> tuple[str, str]:
  """The normalized (prompt, completion), or `SubmissionError` naming each bad field."""
  problems = {}
  values = {"prompt": normalize_text(prompt), "completion": normalize_text(completion)}
  for field, value in values.items():
    if not value.strip():
      problems[field] = f"the {field} is empty; write the {field} before saving"
    elif "\x00" in value:  # PostgreSQL cannot store it; no text needs it
      problems[field] = f"the {field} holds a NUL character (\\0); remove it"
    elif len(value) > limits.max_field_chars:
      problems[field] = (f"the {field} has {len(value):,} characters; the limit is "
                         f"{limits.max_field_chars:,}: shorten it by "
                         f"{len(value) - limits.max_field_chars:,}")
  if problems:
    raise SubmissionError(problems)
  return values["prompt"], values["completion"]


def check_user_id(user_id: str) -> str:
  """The user id, stripped, or ValueError saying what an id may contain."""
  user_id = user_id.strip()
  if not USER_ID.match(user_id):
    raise ValueError(f"user id {user_id!r}: use 1 to 64 letters, digits or _ . @ + - "
                     "(starting with a letter or digit)")
  return user_id


def check_language(code_or_name: str) -> languages.Language:
  """The mT5 language of a code or name; ValueError naming the closest ones otherwise."""
  if not code_or_name.strip():
    raise ValueError("choose your language (a code such as sw or a name such as Swahili)")
  try:
    return languages.get_language(code_or_name)
  except languages.UnknownLanguageError as e:
    raise ValueError(str(e)) from None
