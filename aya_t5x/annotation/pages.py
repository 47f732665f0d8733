"""The HTML pages of the annotation app, with every contributor-supplied value escaped.

Pages are plain server-rendered forms, so that they work without JavaScript and a
refused submission comes back with the contributor's text in place. `static/app.js` adds
the live edit distance and character counters. Every value that comes from a
contributor or a file passes through `esc` (HTML escaping of `& < > " '`); nothing is
ever put into a script, a style or an event attribute, and the server's
Content-Security-Policy runs only the app's own script file.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

from aya_t5x.annotation.forms import Limits
from aya_t5x.annotation.store import Item
from aya_t5x.data import languages

MIN_EDIT_DISTANCE = 5  # what the export's inclusion rule asks of a re-annotation


def esc(value: object) -> str:
  """Text as HTML text or attribute value: shown literally, never interpreted."""
  return html.escape(str(value), quote=True)


def _block(tag: str, text: str, attributes: str = "") -> str:
  # The HTML parser drops one newline right after <pre> and <textarea>: write one, so that
  # text beginning with a line break arrives whole.
  return f"<{tag}{attributes}>\n{esc(text)}</{tag}>"


def language_label(code: str) -> str:
  language = languages.find_language(code)
  return f"{language.name} ({code})" if language else code


def layout(title: str, body: str, *, user_id: str | None = None, language: str | None = None,
           message: str | None = None, error: str | None = None) -> str:
  """A whole page: navigation for a logged-in contributor, a notice, then the body."""
  nav = ""
  if user_id:
    nav = (
        '<nav><a href="/">Home</a> <a href="/write">Write</a> '
        '<a href="/reannotate">Re-annotate</a> <a href="/vote">Vote</a> '
        '<a href="/rate">Rate</a>'
        f'<span class="who">{esc(user_id)} · {esc(language_label(language or ""))}</span>'
        '<form method="post" action="/logout" class="inline">'
        '<button type="submit">Log out</button></form></nav>')
  notice = ""
  if message:
    notice += f'<p class="message" role="status" id="message">{esc(message)}</p>'
  if error:
    notice += f'<p class="error" role="alert" id="error">{esc(error)}</p>'
  return (
      '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
      '<meta name="viewport" content="width=device-width, initial-scale=1">'
      f'<title>{esc(title)} · Aya annotation</title>'
      '<link rel="stylesheet" href="/static/style.css">'
      '<script src="/static/app.js" defer></script></head>'
      f'<body>{nav}<main><h1>{esc(title)}</h1>{notice}{body}</main></body></html>\n')


def _field_error(problems: Mapping[str, str], field: str) -> str:
  if field not in problems:
    return ""
  return f'<p class="field-error" id="{field}-error">{esc(problems[field])}</p>'


def _pair_fields(prompt: str, completion: str, problems: Mapping[str, str], limits: Limits,
                 *, original: bool = False) -> str:
  """The two textareas, with counters and, for re-annotations, live distance outputs."""
  parts = []
  for field, value in (("prompt", prompt), ("completion", completion)):
    extra = f' data-original="original-{field}"' if original else ""
    distance = (f' · edit distance <output id="distance-{field}" for="{field}">–</output>'
                if original else "")
    parts.append(
        f'<label for="{field}">{field.capitalize()}</label>'
        + _block("textarea", value, f' id="{field}" name="{field}" rows="6" '
                 f'data-limit="{limits.max_field_chars}"{extra}')
        + f'<p class="meta"><output id="count-{field}" for="{field}">{len(value)}</output>'
        f' / {limits.max_field_chars:,} characters{distance}</p>'
        + _field_error(problems, field))
  return "".join(parts)


def _show_pair(item: Item, *, prefix: str = "") -> str:
  ids = (f' id="{prefix}prompt"', f' id="{prefix}completion"') if prefix else ("", "")
  return ('<div class="pair"><h3>Prompt</h3>' + _block("pre", item.inputs, ids[0])
          + '<h3>Completion</h3>' + _block("pre", item.targets, ids[1]) + '</div>')


def _author(item: Item) -> str:
  if item.kind == "seed":
    return f"existing pair #{item.id}" + (f" from {esc(item.source)}" if item.source else "")
  what = "original annotation" if item.kind == "original" else "re-annotation"
  return f"{what} #{item.id} by {esc(item.user_id)}"


def login_page(*, user_id: str = "", language: str = "", error: str | None = None) -> str:
  options = "".join(f'<option value="{esc(lang.code)}">{esc(lang.name)}</option>'
                    for lang in languages.all_languages())
  body = (
      '<p>Write prompts and completions in your language, improve existing ones, and '
      'review the work of others. There are no passwords: use the id your team gave you.</p>'
      '<form method="post" action="/login" id="login-form">'
      f'<label for="user_id">User id</label><input id="user_id" name="user_id" '
      f'value="{esc(user_id)}" autocomplete="username" required>'
      '<label for="language">Language (code or name)</label>'
      f'<input id="language" name="language" list="languages" value="{esc(language)}" '
      f'required><datalist id="languages">{options}</datalist>'
      '<button type="submit">Start</button></form>')
  return layout("Log in", body, error=error)


def home_page(*, user_id: str, language: str, counts: Mapping[str, int],
              mine: Mapping[str, int]) -> str:
  body = (
      f'<p>Contributions in {esc(language_label(language))}: '
      f'<span id="count-original">{counts["original"]}</span> original, '
      f'<span id="count-reannotation">{counts["reannotation"]}</span> re-annotations, '
      f'{counts["seed"]} existing pairs to re-annotate, {counts["votes"]} votes, '
      f'{counts["ratings"]} ratings.</p>'
      f'<p>Yours: {mine["original"]} original, {mine["reannotation"]} re-annotations, '
      f'{mine["votes"]} votes, {mine["ratings"]} ratings.</p>'
      '<ul><li><a href="/write">Write</a> a new prompt and completion.</li>'
      '<li><a href="/reannotate">Re-annotate</a> an existing pair: improve it, the page '
      f'shows how much you changed (at least {MIN_EDIT_DISTANCE} characters count).</li>'
      '<li><a href="/vote">Vote</a> thumbs up or down on contributions.</li>'
      '<li><a href="/rate">Rate</a> re-annotations from 1 to 5.</li></ul>')
  return layout("Aya annotation", body, user_id=user_id, language=language)


def write_page(*, user_id: str, language: str, limits: Limits, prompt: str = "",
               completion: str = "", problems: Mapping[str, str] | None = None,
               message: str | None = None) -> str:
  problems = problems or {}
  body = (
      f'<p>Write an original prompt and its completion in {esc(language_label(language))}.'
      '</p><form method="post" action="/write" id="write-form" accept-charset="utf-8">'
      + _pair_fields(prompt, completion, problems, limits)
      + '<button type="submit" id="save">Save</button></form>')
  error = "Nothing was saved: " + "; ".join(problems.values()) if problems else None
  return layout("Write", body, user_id=user_id, language=language, message=message,
                error=error)


def reannotate_page(*, user_id: str, language: str, limits: Limits, item: Item | None,
                    prompt: str | None = None, completion: str | None = None,
                    problems: Mapping[str, str] | None = None, message: str | None = None,
                    error: str | None = None) -> str:
  problems = problems or {}
  if item is None:
    body = ('<p id="empty-queue">Nothing left to re-annotate in '
            f'{esc(language_label(language))} for you. Thank you!</p>')
  else:
    body = (
        f'<p>Improve this {_author(item)}: fix mistakes, make it more natural or more '
        f'complete. Changes of at least {MIN_EDIT_DISTANCE} characters (prompt and '
        'completion together) enter the dataset.</p>'
        + '<h2>As it is</h2>' + _show_pair(item, prefix="original-")
        + '<h2>Your version</h2><form method="post" action="/reannotate" '
        'id="reannotate-form" accept-charset="utf-8">'
        f'<input type="hidden" name="item_id" value="{item.id}">'
        + _pair_fields(item.inputs if prompt is None else prompt,
                       item.targets if completion is None else completion, problems, limits,
                       original=True)
        + '<p class="meta">Total edit distance <output id="distance-total">–</output> '
        f'(at least {MIN_EDIT_DISTANCE} counts)</p>'
        '<button type="submit" name="action" value="save" id="save">Save</button> '
        '<button type="submit" name="action" value="skip" id="skip" formnovalidate>'
        'Skip</button></form>')
  if problems:
    error = "Nothing was saved: " + "; ".join(problems.values())
  return layout("Re-annotate", body, user_id=user_id, language=language, message=message,
                error=error)


def vote_page(*, user_id: str, language: str, item: Item | None, message: str | None = None,
              error: str | None = None) -> str:
  if item is None:
    body = ('<p id="empty-queue">Nothing left to vote on in '
            f'{esc(language_label(language))} for you. Thank you!</p>')
  else:
    body = (
        f'<p>Is this {_author(item)} a good prompt and completion?</p>' + _show_pair(item)
        + '<form method="post" action="/vote" id="vote-form">'
        f'<input type="hidden" name="item_id" value="{item.id}">'
        '<button type="submit" name="vote" value="up" id="vote-up" '
        'aria-label="thumbs up">&#128077; Good</button> '
        '<button type="submit" name="vote" value="down" id="vote-down" '
        'aria-label="thumbs down">&#128078; Bad</button> '
        '<button type="submit" name="vote" value="skip" id="skip">Skip</button></form>')
  return layout("Vote", body, user_id=user_id, language=language, message=message,
                error=error)


def rate_page(*, user_id: str, language: str, item: Item | None, parent: Item | None,
              message: str | None = None, error: str | None = None) -> str:
  if item is None:
    body = ('<p id="empty-queue">Nothing left to rate in '
            f'{esc(language_label(language))} for you. Thank you!</p>')
  else:
    before = (f'<div><h2>Before: {_author(parent)}</h2>' + _show_pair(parent) + '</div>'
              if parent else "")
    stars = "".join(
        f'<label class="star"><input type="radio" name="rating" value="{n}" '
        f'id="rating-{n}" required> {n}</label>' for n in range(1, 6))
    body = (
        '<p>How much better is the re-annotation than the pair it edits? 1: worse or no '
        'better, 3: somewhat better, 5: much better.</p><div class="compare">' + before
        + f'<div><h2>After: {_author(item)} (edit distance {item.distance})</h2>'
        + _show_pair(item) + '</div></div>'
        + '<form method="post" action="/rate" id="rate-form">'
        f'<input type="hidden" name="item_id" value="{item.id}">'
        f'<fieldset><legend>Rating</legend>{stars}</fieldset>'
        '<button type="submit" name="action" value="rate" id="save">Rate</button> '
        '<button type="submit" name="action" value="skip" id="skip" formnovalidate>'
        'Skip</button></form>')
  return layout("Rate", body, user_id=user_id, language=language, message=message,
                error=error)


def message_page(title: str, text: str, *, link: str = "/") -> str:
  """A page that only says something (an error with no form to return to)."""
  return layout(title, f'<p id="error-text">{esc(text)}</p><p><a href="{esc(link)}">Back</a></p>')
