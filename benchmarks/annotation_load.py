"""A bounded load run of the annotation app on the loopback interface, with a count check.

Starts `aya-t5x annotate serve` (one process, or `--processes N` on one database) on
127.0.0.1 with a fresh database holding `--contributors` accounts (default 200, spread
over four languages) and seed pairs, then runs one simulated contributor per account for
`--seconds` (default 60): each logs in with its password (the production scrypt cost),
then repeats writing an original pair, re-annotating the next pair of its queue and
voting on the next contribution, each as the browser does it (GET the page, POST the
form with its CSRF token, follow the redirect), pausing a think time between actions
(uniform in `--think_min_s`..`--think_max_s`, 2-8 s by default: people take minutes to
write a pair and seconds to vote, so 200 connections at this pace stand for a much larger
crowd's request rate; with 0.5-1.5 s it is a stress run that saturates two cores).
Contributors arrive over the first `--arrival_s` (30 s): each login costs one scrypt
hash (16 MiB, about 0.1 s of a core), so 200 logins at one instant would hold two cores
for ten seconds.

After the run it checks every acknowledged write (a 303 naming the saved item, or the
vote's 303) against the database: each is there once, with its author and text, and the
database holds nothing else (a write whose POST the client gave up on after 30 s may be
there once or not at all, and is counted as `saved_without_answer` when it is).
Latency is reported over every request, per kind, and over the requests sent from 10 s
after the last arrival on (`after_arrivals`: the steady state, without the login burst).
Prints one JSON line per store (the SQLite run uses one app process, as SQLite is meant
to be served; `--processes 2` runs two on PostgreSQL):

    python benchmarks/annotation_load.py --store sqlite
    python benchmarks/annotation_load.py --store postgresql --processes 2 \
      --postgres_url postgresql://...

(--postgres_url defaults to $AYA_TEST_POSTGRES_URL; a fresh database is created beside
it and dropped afterwards.) Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

LANGUAGES = ("sw", "yo", "hi", "ar")
PASSWORD = "load test password 1"


class _ClosedBeforeAnswer(Exception):
  """The connection closed before any byte of the answer arrived."""


class Http:
  """A minimal keep-alive HTTP/1.1 client on one connection (cookies kept), for loopback."""

  def __init__(self, host: str, port: int):
    self.host, self.port = host, port
    self.cookies: dict[str, str] = {}
    self.reader = self.writer = None

  async def request(self, method: str, path: str, form: dict[str, str] | None = None
                    ) -> tuple[int, dict[str, str], str]:
    if self.writer is not None and self.reader.at_eof():
      # The server closed the idle connection (its keep-alive timeout, 5 s): open a new
      # one, as a browser does.
      self.close()
      self.writer = None
    reused = self.writer is not None
    if self.writer is None:
      self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
    try:
      return await self._exchange(method, path, form)
    except (ConnectionResetError, BrokenPipeError, _ClosedBeforeAnswer):
      if not reused:
        raise
    # Closed by the server as the request went out on an idle connection: like a browser,
    # send it once more on a new one (nothing of it was answered, so nothing was done).
    self.close()
    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
    return await self._exchange(method, path, form)

  async def _exchange(self, method: str, path: str, form: dict[str, str] | None
                      ) -> tuple[int, dict[str, str], str]:
    body = urllib.parse.urlencode(form).encode() if form is not None else b""
    headers = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
               f"Content-Length: {len(body)}", "Sec-Fetch-Site: same-origin"]
    if form is not None:
      headers.append("Content-Type: application/x-www-form-urlencoded")
    if self.cookies:
      headers.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
    self.writer.write(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
    await self.writer.drain()
    status_line = await self.reader.readline()
    if not status_line:
      raise _ClosedBeforeAnswer()
    status = int(status_line.split()[1])
    response_headers: dict[str, str] = {}
    while (line := await self.reader.readline()) not in (b"\r\n", b""):
      name, _, value = line.decode().partition(":")
      name, value = name.strip().lower(), value.strip()
      if name == "set-cookie":
        key, _, rest = value.partition("=")
        self.cookies[key] = rest.split(";")[0]
      response_headers[name] = value
    text = (await self.reader.readexactly(int(response_headers.get("content-length", 0))
                                          )).decode()
    if response_headers.get("connection") == "close":
      self.writer.close()
      self.writer = None
    return status, response_headers, text

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()


class Stats:
  def __init__(self):
    self.latencies: dict[str, list[float]] = {}
    self.after_arrivals: list[float] = []  # latencies of requests sent once all arrived
    self.arrived_at = float("inf")
    self.errors: list[str] = []
    self.acked_items: list[tuple[int, str, str]] = []  # (id, user, prompt)
    self.acked_votes: list[tuple[int, str]] = []  # (item id, user)
    # Writes whose POST got no answer (client timeout): saved or not, either is right.
    self.unanswered: set = set()


async def timed(stats: Stats, kind: str, http: Http, method: str, path: str,
                form: dict[str, str] | None = None, expect: int = 200,
                write: object = None) -> tuple[int, dict, str]:
  start = time.perf_counter()
  try:
    status, headers, text = await asyncio.wait_for(http.request(method, path, form), 30)
  except Exception as e:  # noqa: BLE001 (counted as an error)
    stats.errors.append(f"{kind}: {type(e).__name__} {e}")
    if write is not None:
      stats.unanswered.add(write)
    http.close()
    http.writer = None
    raise
  stats.latencies.setdefault(kind, []).append(time.perf_counter() - start)
  if start >= stats.arrived_at:
    stats.after_arrivals.append(time.perf_counter() - start)
  if status != expect:
    stats.errors.append(f"{kind}: status {status}")
  return status, headers, text


def _csrf(text: str) -> str:
  return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


async def contributor(user: str, http: Http, stats: Stats, deadline: float, think: tuple,
                      arrival_s: float, rng: random.Random) -> None:
  await asyncio.sleep(rng.uniform(0, arrival_s))
  try:
    _, _, page = await timed(stats, "login_page", http, "GET", "/login")
    status, headers, _ = await timed(stats, "login", http, "POST", "/login", {
        "user_id": user, "password": PASSWORD, "csrf": _csrf(page)}, expect=303)
    if status != 303:
      return
    n = 0
    while time.monotonic() < deadline:
      n += 1
      action = n % 3
      if action == 1:
        _, _, page = await timed(stats, "page", http, "GET", "/write")
        prompt = f"{user} swali {n} {secrets.token_hex(4)}"
        status, headers, _ = await timed(stats, "write", http, "POST", "/write", {
            "prompt": prompt, "completion": f"jibu {n}", "csrf": _csrf(page)}, expect=303,
            write=(user, prompt))
        if status == 303:
          item_id = int(headers["location"].split("saved=")[1])
          stats.acked_items.append((item_id, user, prompt))
          await timed(stats, "page", http, "GET", headers["location"])
      elif action == 2:
        _, _, page = await timed(stats, "page", http, "GET", "/reannotate")
        found = re.search(r'name="item_id" value="(\d+)"', page)
        if found:
          prompt = f"{user} edit {n} {secrets.token_hex(4)}"
          status, headers, _ = await timed(stats, "reannotate", http, "POST", "/reannotate", {
              "item_id": found.group(1), "action": "save", "prompt": prompt,
              "completion": f"jibu bora {n}", "csrf": _csrf(page)}, expect=303,
              write=(user, prompt))
          if status == 303:
            item_id = int(headers["location"].split("saved=")[1])
            stats.acked_items.append((item_id, user, prompt))
            await timed(stats, "page", http, "GET", headers["location"])
      else:
        _, _, page = await timed(stats, "page", http, "GET", "/vote")
        found = re.search(r'name="item_id" value="(\d+)"', page)
        if found:
          status, headers, _ = await timed(stats, "vote", http, "POST", "/vote", {
              "item_id": found.group(1), "vote": rng.choice(["up", "down"]),
              "csrf": _csrf(page)}, expect=303, write=(int(found.group(1)), user))
          if status == 303:
            stats.acked_votes.append((int(found.group(1)), user))
            await timed(stats, "page", http, "GET", headers["location"])
      await asyncio.sleep(rng.uniform(*think))
  except Exception:  # noqa: BLE001 (already counted; this contributor stops)
    pass
  finally:
    http.close()


def prepare(db_target: str, contributors: int) -> list[str]:
  """Accounts (one scrypt hash shared, to keep setup short) and seed pairs per language."""
  import sqlalchemy as sa

  from aya_t5x.annotation import accounts, database
  from aya_t5x.annotation.store import Store

  users = [f"user{n:03d}" for n in range(contributors)]
  hashed = accounts.hash_password(PASSWORD)
  with Store(db_target) as store:
    with store.db.write() as conn:
      conn.execute(sa.insert(database.accounts), [
          {"user_id": u, "language": LANGUAGES[i % len(LANGUAGES)], "role": "contributor",
           "password_hash": hashed, "created": database.now_text(),
           # The case-folded id (schema 3); absent in older versions of the app, which
           # this run also measures for comparison.
           **({"user_key": u.casefold()} if "user_key" in database.accounts.c else {})}
          for i, u in enumerate(users)])
    store.add_seeds([(lang, f"seed {lang} {n}", f"jibu {n}", f"seeds:{n}")
                     for lang in LANGUAGES for n in range(100)])
  return users


def count_check(db_target: str, stats: Stats) -> dict:
  from aya_t5x.annotation.store import Store

  with Store(db_target) as store:
    items = {i.id: i for i in store.items() if i.kind != "seed"}
    votes = [(v.item_id, v.user_id) for v in store.votes()]
  acked_ids = [i for i, _, _ in stats.acked_items]
  missing = [i for i, user, prompt in stats.acked_items
             if i not in items or (items[i].user_id, items[i].inputs) != (user, prompt)]
  unacked = [items[i] for i in set(items) - set(acked_ids)]
  # An unacknowledged row is right only where its POST got no answer (the client gave up).
  unexplained = [i for i in unacked if (i.user_id, i.inputs) not in stats.unanswered]
  texts = [(i.user_id, i.inputs) for i in items.values()]
  unexplained_votes = set(votes) - set(stats.acked_votes) - stats.unanswered
  result = {"acked_writes": len(acked_ids), "acked_votes": len(stats.acked_votes),
            "missing_or_wrong": len(missing),
            "doubled": len(acked_ids) - len(set(acked_ids)) + len(texts) - len(set(texts)),
            "saved_without_answer": len(unacked) - len(unexplained),
            "unexplained_in_db": len(unexplained) + len(unexplained_votes),
            "votes_missing": len(set(stats.acked_votes) - set(votes)),
            "votes_doubled": len(votes) - len(set(votes))}
  result["ok"] = not (result["missing_or_wrong"] or result["doubled"]
                      or result["unexplained_in_db"] or result["votes_missing"]
                      or result["votes_doubled"])
  return result


def start_servers(db_target: str, processes: int) -> tuple[list, list[tuple[str, int]]]:
  procs, addresses = [], []
  for _ in range(processes):
    proc = subprocess.Popen(
        [sys.executable, "-m", "aya_t5x.cli", "annotate", "serve", "--db", db_target,
         "--host", "127.0.0.1", "--port", "0", "--pool_size", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    url = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not url:
      raise RuntimeError(f"the server did not start: {line!r}")
    procs.append(proc)
    addresses.append(("127.0.0.1", int(url.group(1))))
  return procs, addresses


async def run_load(users: list[str], addresses: list, seconds: float, think: tuple,
                   arrival_s: float, stats: Stats) -> float:
  deadline = time.monotonic() + seconds
  rng = random.Random(0)
  start = time.perf_counter()
  stats.arrived_at = start + arrival_s + 10  # the last logins are through by then
  await asyncio.gather(*[
      contributor(u, Http(*addresses[i % len(addresses)]), stats, deadline, think, arrival_s,
                  random.Random(rng.random())) for i, u in enumerate(users)])
  return time.perf_counter() - start


def _percentile(values: list[float], q: float) -> float:
  return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
      else (values[0] if values else float("nan"))


def measure(store: str, db_target: str, args: argparse.Namespace) -> dict:
  load_at_start = [round(x, 1) for x in os.getloadavg()]
  users = prepare(db_target, args.contributors)
  procs, addresses = start_servers(db_target, args.processes)
  stats = Stats()
  try:
    elapsed = asyncio.run(run_load(users, addresses, args.seconds,
                                   (args.think_min_s, args.think_max_s), args.arrival_s,
                                   stats))
  finally:
    for proc in procs:
      proc.terminate()
      proc.wait(timeout=30)
  every = [x for values in stats.latencies.values() for x in values]
  ms = lambda x: round(x * 1000, 1)  # noqa: E731
  return {
      "benchmark": "annotation_load", "store": store, "processes": args.processes,
      "contributors": args.contributors, "seconds": round(elapsed, 1),
      "think_s": [args.think_min_s, args.think_max_s], "arrival_s": args.arrival_s,
      "load_average_start": load_at_start,
      "load_average": [round(x, 1) for x in os.getloadavg()], "requests": len(every),
      "requests_per_s": round(len(every) / elapsed, 1),
      "p50_ms": ms(_percentile(every, 50)), "p95_ms": ms(_percentile(every, 95)),
      "max_ms": ms(max(every)),
      "after_arrivals": {"n": len(stats.after_arrivals),
                         "p50_ms": ms(_percentile(stats.after_arrivals, 50)),
                         "p95_ms": ms(_percentile(stats.after_arrivals, 95))},
      "by_kind": {k: {"n": len(v), "p50_ms": ms(_percentile(v, 50)),
                      "p95_ms": ms(_percentile(v, 95))}
                  for k, v in sorted(stats.latencies.items())},
      "errors": len(stats.errors), "error_examples": sorted(set(stats.errors))[:5],
      "count_check": count_check(db_target, stats),
      "machine": f"{platform.node()} {os.cpu_count()} CPUs, {platform.python_version()}",
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
  parser.add_argument("--postgres_url", default=os.environ.get("AYA_TEST_POSTGRES_URL"))
  parser.add_argument("--contributors", type=int, default=200)
  parser.add_argument("--seconds", type=float, default=60)
  parser.add_argument("--processes", type=int, default=1)
  parser.add_argument("--arrival_s", type=float, default=30)
  parser.add_argument("--think_min_s", type=float, default=2.0)
  parser.add_argument("--think_max_s", type=float, default=8.0)
  args = parser.parse_args()
  # A terminated run still stops the servers it started (the `finally` in measure).
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
  if args.store == "sqlite":
    with tempfile.TemporaryDirectory() as tmp:
      print(json.dumps(measure("sqlite", os.path.join(tmp, "load.db"), args)), flush=True)
    return
  if not args.postgres_url:
    parser.error("--store postgresql needs --postgres_url (or $AYA_TEST_POSTGRES_URL)")
  import psycopg

  from aya_t5x.annotation import database

  admin_url = database.database_url(args.postgres_url)
  if admin_url.host not in ("127.0.0.1", "localhost", "::1"):
    parser.error("this load run only contacts 127.0.0.1: give a local PostgreSQL")
  name = f"aya_load_{secrets.token_hex(4)}"
  plain = admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
  with psycopg.connect(plain, autocommit=True) as conn:
    conn.execute(f"CREATE DATABASE {name}")
  try:
    target = admin_url.set(database=name).render_as_string(hide_password=False)
    print(json.dumps(measure("postgresql", target, args)), flush=True)
  finally:
    with psycopg.connect(plain, autocommit=True) as conn:
      conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


if __name__ == "__main__":
  main()
