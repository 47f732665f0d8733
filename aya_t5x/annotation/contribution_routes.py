"""The annotation app's contribution routes: home, write, re-annotate, vote, rate, and the
leads' and admins' export download.

The user id and language always come from the session. Every route that takes an
`item_id` resolves it with `Store.target` before it shows or saves anything: an item of
another language or kind, and a missing one, get the same 404, so that no contributor
reads items outside their language. Numbers in forms and query strings are ASCII digits
(`request_checks.number`); anything else is a 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from aya_t5x.annotation import accounts, export, forms, responses
from aya_t5x.annotation.request_checks import SECURITY_HEADERS, Refused, number
from aya_t5x.annotation.store import Item, NotVisible, StoreError
from aya_t5x.data import languages

if TYPE_CHECKING:
  from aya_t5x.annotation.server import AnnotationApp


def _saved(request: Request) -> int | None:
  """The `saved=N` of a page shown after a save (None without one; 400 if not a number)."""
  saved = request.query_params.get("saved")
  return None if saved is None else number(saved, "saved item")


def _item_id(form: dict[str, str]) -> int:
  return number(form.get("item_id", ""), "item")


class ContributionRoutes:
  """Handlers of the contribution pages; `app` gives the store, config and limits."""

  def __init__(self, app: AnnotationApp):
    self.app = app
    self.store = app.store
    self.limits = app.config.limits

  async def _target(self, session: accounts.Session, item_id: int, queue: str) -> Item:
    """The item a contributor may act on; the one 404 for missing and forbidden ids
    (StoreError for their own item)."""
    try:
      return await run_in_threadpool(lambda: self.store.target(
          user_id=session.user_id, language=session.language, item_id=item_id, queue=queue))
    except NotVisible as e:
      raise Refused(404, f"Not saved: {e}; reload the page.") from None

  async def home(self, request: Request, session: accounts.Session, form: None) -> Response:
    counts, mine = await run_in_threadpool(
        lambda: (self.store.counts(session.language),
                 self.store.contributions_of(session.user_id)))
    return responses.page(200, "home.html", title="Aya annotation", session=session,
                          counts=counts, mine=mine)

  def _write_page(self, status: int, session: accounts.Session, *, prompt: str = "",
                  completion: str = "", problems: dict | None = None,
                  message: str | None = None) -> Response:
    problems = problems or {}
    error = "Nothing was saved: " + "; ".join(problems.values()) if problems else None
    return responses.page(status, "write.html", title="Write", session=session,
                          limits=self.limits, prompt=prompt, completion=completion,
                          problems=problems, message=message, error=error)

  async def write_form(self, request: Request, session: accounts.Session, form: None
                       ) -> Response:
    saved = _saved(request)
    return self._write_page(200, session, message=f"Saved your pair #{saved}. Thank you!"
                            if saved is not None else None)

  async def write(self, request: Request, session: accounts.Session, form: dict[str, str]
                  ) -> Response:
    prompt, completion = form.get("prompt", ""), form.get("completion", "")
    try:
      prompt, completion = forms.check_pair(prompt, completion, self.limits)
    except forms.SubmissionError as e:
      return self._write_page(400, session, prompt=forms.normalize_text(prompt),
                              completion=forms.normalize_text(completion), problems=e.problems)
    item = await run_in_threadpool(
        lambda: self.store.add_original(user_id=session.user_id, language=session.language,
                                        inputs=prompt, targets=completion))
    return responses.redirect(f"/write?saved={item.id}")

  def _reannotate_page(self, status: int, session: accounts.Session, item, *,
                       prompt: str | None = None, completion: str | None = None,
                       problems: dict | None = None, message: str | None = None,
                       error: str | None = None) -> Response:
    problems = problems or {}
    if problems:
      error = "Nothing was saved: " + "; ".join(problems.values())
    return responses.page(status, "reannotate.html", title="Re-annotate", session=session,
                          limits=self.limits, item=item, prompt=prompt,
                          completion=completion, problems=problems, message=message,
                          error=error)

  async def reannotate_form(self, request: Request, session: accounts.Session, form: None
                            ) -> Response:
    saved = _saved(request)

    def load():
      edit = self.store.get(saved) if saved is not None else None
      return edit, self.store.next_to_reannotate(session.user_id, session.language)

    edit, item = await run_in_threadpool(load)
    message = None
    if edit is not None and edit.user_id == session.user_id:  # only one's own edit is named
      message = (f"Saved re-annotation #{edit.id}: edit distance {edit.prompt_distance} in "
                 f"the prompt and {edit.completion_distance} in the completion.")
    return self._reannotate_page(200, session, item, message=message)

  async def _skip(self, session: accounts.Session, item_id: int, queue: str) -> Response:
    try:
      await run_in_threadpool(lambda: self.store.skip(
          user_id=session.user_id, language=session.language, item_id=item_id, queue=queue))
    except NotVisible as e:
      raise Refused(404, f"Not saved: {e}; reload the page.") from None
    except StoreError as e:
      raise Refused(400, f"Not saved: {e}; reload the page.") from None
    return responses.redirect(f"/{queue}")

  async def reannotate(self, request: Request, session: accounts.Session,
                       form: dict[str, str]) -> Response:
    item_id = _item_id(form)
    if form.get("action") == "skip":
      return await self._skip(session, item_id, "reannotate")
    prompt, completion = form.get("prompt", ""), form.get("completion", "")
    try:
      parent = await self._target(session, item_id, "reannotate")
      prompt, completion = forms.check_pair(prompt, completion, self.limits)
      item = await run_in_threadpool(
          lambda: self.store.add_reannotation(
              user_id=session.user_id, language=session.language, parent_id=item_id,
              inputs=prompt, targets=completion))
    except forms.SubmissionError as e:
      return self._reannotate_page(400, session, parent, prompt=forms.normalize_text(prompt),
                                   completion=forms.normalize_text(completion),
                                   problems=e.problems)
    except StoreError as e:
      following = await run_in_threadpool(self.store.next_to_reannotate, session.user_id,
                                          session.language)
      return self._reannotate_page(409, session, following, error=f"Not saved: {e}.")
    return responses.redirect(f"/reannotate?saved={item.id}")

  async def vote_form(self, request: Request, session: accounts.Session, form: None
                      ) -> Response:
    saved = _saved(request)
    item = await run_in_threadpool(self.store.next_to_vote, session.user_id, session.language)
    return responses.page(200, "vote.html", title="Vote", session=session, item=item,
                          message="Vote saved. Thank you!" if saved else None)

  async def vote(self, request: Request, session: accounts.Session, form: dict[str, str]
                 ) -> Response:
    item_id = _item_id(form)
    choice = form.get("vote")
    if choice == "skip":
      return await self._skip(session, item_id, "vote")
    try:
      await self._target(session, item_id, "vote")
      if choice not in ("up", "down"):
        raise StoreError("choose thumbs up or thumbs down")
      await run_in_threadpool(lambda: self.store.vote(
          user_id=session.user_id, language=session.language, item_id=item_id,
          up=choice == "up"))
    except StoreError as e:
      item = await run_in_threadpool(self.store.next_to_vote, session.user_id,
                                     session.language)
      return responses.page(409, "vote.html", title="Vote", session=session, item=item,
                            error=f"Not saved: {e}.")
    return responses.redirect("/vote?saved=1")

  async def _rate_page(self, status: int, session: accounts.Session, *,
                       message: str | None = None, error: str | None = None) -> Response:
    def load():
      item = self.store.next_to_rate(session.user_id, session.language)
      return item, self.store.get(item.parent_id) if item else None

    item, parent = await run_in_threadpool(load)
    return responses.page(status, "rate.html", title="Rate", session=session, item=item,
                          parent=parent, message=message, error=error)

  async def rate_form(self, request: Request, session: accounts.Session, form: None
                      ) -> Response:
    saved = _saved(request)
    return await self._rate_page(200, session, message="Rating saved. Thank you!"
                                 if saved else None)

  async def rate(self, request: Request, session: accounts.Session, form: dict[str, str]
                 ) -> Response:
    item_id = _item_id(form)
    if form.get("action") == "skip":
      return await self._skip(session, item_id, "rate")
    rating = form.get("rating", "")
    try:
      await self._target(session, item_id, "rate")
      if rating not in ("1", "2", "3", "4", "5"):
        raise StoreError("choose a rating from 1 to 5")
      await run_in_threadpool(lambda: self.store.rate(
          user_id=session.user_id, language=session.language, item_id=item_id,
          rating=int(rating)))
    except StoreError as e:
      return await self._rate_page(409, session, error=f"Not saved: {e}.")
    return responses.redirect("/rate?saved=1")

  async def export(self, request: Request, session: accounts.Session, form: None) -> Response:
    """The Aya Dataset records under the inclusion rules: a lead's own language, or all."""
    result = await run_in_threadpool(export.build_export, self.store,
                                     self.app.config.export_rules)
    records = result.records
    if session.role != "admin":
      code = languages.get_language(session.language).iso639_3
      records = [r for r in records if r["language_code"] == code]
    body = export.jsonl(records)
    name = f"aya_annotations_{session.language if session.role != 'admin' else 'all'}.jsonl"
    return Response(body, 200, media_type="application/x-ndjson", headers={
        **SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'})
