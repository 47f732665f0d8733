"""Translating whole datasets in resumable shards: inputs, per-language caps, hosts, report.

    records, skipped = read_input("dolly.jsonl")             # or read_input(task="...")
    units, more = plan_units(records, fields=("inputs", "targets"), source_language="en",
                             target_languages=["sw", "yo"], caps=Caps(max_per_language=3000))
    summary = run_shards(units, "out/", translation_worker(backend, ("inputs", "targets")),
                         settings={...}, host_index=0, host_count=1)

Caps follow the Aya collection (RECIPE.md section 3): at most N examples per language
and dataset, a different seeded random sample for each language, some datasets (Dolly)
uncapped. Units (one example into one language) are cut into shards in a fixed order;
each shard is written to `data/part-00000-of-000NN.jsonl` through a temporary file and
then marked done in `shards/`, so a stopped run that starts again skips finished shards
and redoes only the one it was in. `host_index` / `host_count` give each host every
`host_count`-th shard: hosts sharing the output folder never write the same file. The
folder's `plan.json` records the settings; a run with other settings refuses to mix
its shards in. Output records keep the input's other fields and add `id`, `source_id`,
`language`, `source_language` and `original` (the source texts); translations that
contain `<unk>`, are empty or copy the source are dropped and counted per language.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.atomic_files import write_text_atomically
from aya_t5x.data import readers
from aya_t5x.gathering.translation import (
  DROP_REASONS,
  Backend,
  language_code,
  output_problem,
  translate_texts,
)

DATA_DIR = "data"      # the shards: what `aya-t5x tasks add` registers
STATE_DIR = "shards"   # one done marker per finished shard
PLAN_FILE = "plan.json"
Record = dict[str, Any]


# ----------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True, kw_only=True)
class Skipped:
  """Input records left out, counted, with the first few reasons."""

  count: int = 0
  examples: tuple[str, ...] = ()

  def add(self, why: str) -> Skipped:
    return Skipped(count=self.count + 1, examples=(self.examples + (why,))[:5])

  def __add__(self, other: Skipped) -> Skipped:
    return Skipped(count=self.count + other.count,
                   examples=(self.examples + other.examples)[:5])


def _is_tokenizing(preprocessor: Any) -> bool:
  import seqio

  fn = getattr(preprocessor, "func", preprocessor)
  return fn in (seqio.preprocessors.tokenize, seqio.preprocessors.tokenize_and_append_eos)


def _task_records(name: str, split: str) -> Iterable[tuple[str, Record]]:
  """Text examples of a SeqIO task: its source and preprocessors, before tokenization."""
  import seqio

  try:
    task = seqio.get_mixture_or_task(name)
  except ValueError as e:
    raise ValueError(f"--task {name!r}: {e} (pass --module to register it)") from None
  if not isinstance(task, seqio.Task):
    raise ValueError(f"{name} is a mixture; translate its tasks one by one")
  if split not in task.splits:
    raise ValueError(f"task {name} has no split {split!r}; splits: {', '.join(task.splits)}")
  dataset = task.source.get_dataset(split=split, shuffle=False)
  for preprocessor in task.preprocessors:
    if _is_tokenizing(preprocessor):
      break
    if isinstance(preprocessor, seqio.CacheDatasetPlaceholder):
      continue
    dataset = seqio.utils.add_kwargs_to_transform(
        preprocessor, sequence_length=None, output_features=task.output_features)(dataset)
  for number, example in enumerate(dataset.as_numpy_iterator(), start=1):
    yield f"{name}:{split}:{number}", {
        k: v.decode("utf-8") if isinstance(v, bytes) else v.tolist() if hasattr(v, "tolist")
        else v for k, v in example.items()}


def read_input(path: str | os.PathLike | None = None, *, task: str | None = None,
               split: str = "train", tolerant: bool = False
               ) -> tuple[list[tuple[str, Record]], Skipped]:
  """(location, record) pairs of a data file or folder (`readers` formats) or a SeqIO task.

  A malformed line raises (naming file and line) unless `tolerant`, which counts it.
  """
  if (path is None) == (task is None):
    raise ValueError("give the data to translate: a file or folder (--input) or a SeqIO task "
                     "(--task), not both")
  if task is not None:
    return list(_task_records(task, split)), Skipped()
  records, skipped = [], Skipped()
  for location, record in readers.iter_records(path):
    if isinstance(record, readers.MalformedRecord):
      if not tolerant:
        raise ValueError(f"{record} (pass --tolerant to skip and count such lines)")
      skipped = skipped.add(str(record))
      continue
    records.append((str(location), record))
  return records, skipped


# ----------------------------------------------------------------------------- planning


@dataclasses.dataclass(frozen=True, kw_only=True)
class Caps:
  """How many examples each language gets (the Aya collection: 3,000 per dataset)."""

  max_per_language: int | None = None   # per language and dataset; None: no cap
  uncapped: tuple[str, ...] = ()        # dataset name patterns never capped ("dolly")
  dataset_key: str | None = None        # the record field naming its dataset
  seed: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Unit:
  """One example to translate into one language."""

  key: str              # the output record's id
  source_id: str        # the input example's id
  record: Record
  source_language: str
  target_language: str


def _checked(location: str, record: Record, fields: Sequence[str]) -> str | None:
  for field in fields:
    if field not in record:
      return f"{location}: no field {field!r} (fields: {', '.join(sorted(record))}); fix --fields"
    if not isinstance(record[field], str):
      return f"{location}: field {field!r} is {type(record[field]).__name__}, not text"
  return None


def plan_units(records: Sequence[tuple[str, Record]], *, fields: Sequence[str],
               source_language: str, target_languages: Sequence[str],
               caps: Caps = Caps(), id_key: str | None = None, tolerant: bool = False
               ) -> tuple[list[Unit], Skipped]:
  """The units to translate, language by language in input order, after the caps.

  Each (language, dataset) pair draws its own seeded sample, so languages get different
  examples and the same settings always give the same plan.
  """
  source = language_code(source_language)
  targets = [language_code(t) for t in target_languages]
  if not targets:
    raise ValueError("give at least one target language")
  if source in targets:
    raise ValueError(f"target languages {targets} include the source language {source}")
  if caps.max_per_language is not None and caps.max_per_language < 1:
    raise ValueError(f"max_per_language={caps.max_per_language}: give at least 1 or no cap")
  kept, skipped, seen = [], Skipped(), set()
  for index, (location, record) in enumerate(records):
    problem = _checked(location, record, fields)
    if problem is None and id_key is not None:
      if id_key not in record:
        problem = f"{location}: no id field {id_key!r}; fix --id_key"
      elif str(record[id_key]) in seen:
        problem = f"{location}: id {record[id_key]!r} appears twice; ids must be unique"
    if problem:
      if not tolerant:
        raise ValueError(f"{problem} (pass --tolerant to skip and count such records)")
      skipped = skipped.add(problem)
      continue
    source_id = str(record[id_key]) if id_key is not None else f"{index:08d}"
    seen.add(source_id)
    kept.append((source_id, record))
  by_dataset: dict[str, list[int]] = defaultdict(list)
  for position, (_, record) in enumerate(kept):
    by_dataset[str(record.get(caps.dataset_key, "")) if caps.dataset_key else ""].append(position)
  units = []
  for target in targets:
    chosen: list[int] = []
    for dataset, positions in by_dataset.items():
      capped = caps.max_per_language is not None and not any(
          p.lower() in dataset.lower() for p in caps.uncapped)
      if capped and len(positions) > caps.max_per_language:
        rng = random.Random(f"{caps.seed}/{target}/{dataset}")  # str seeds are stable
        positions = rng.sample(positions, caps.max_per_language)
      chosen += positions
    for position in sorted(chosen):
      source_id, record = kept[position]
      units.append(Unit(key=f"{source_id}.{target}", source_id=source_id, record=record,
                        source_language=source, target_language=target))
  return units, skipped


# ----------------------------------------------------------------------------- shards


@dataclasses.dataclass(kw_only=True)
class ShardResult:
  """What a worker made of one shard's units."""

  records: list[Record]
  dropped: Counter = dataclasses.field(default_factory=Counter)  # (language, reason) -> n
  sentences: int = 0


Worker = Callable[[Sequence[Unit]], ShardResult]


def shard_name(index: int, count: int) -> str:
  return f"part-{index:05d}-of-{count:05d}.jsonl"


def _fingerprint(units: Sequence[Unit]) -> str:
  digest = hashlib.sha256()
  for unit in units:
    digest.update(f"{unit.key}\t{unit.source_language}\t{unit.target_language}\n".encode())
  return digest.hexdigest()[:16]


def _check_plan(output_dir: Path, plan: Mapping[str, Any]) -> None:
  path = output_dir / PLAN_FILE
  plan = json.loads(json.dumps(plan))  # as it reads back: tuples become lists
  if path.exists():
    old = json.loads(path.read_text(encoding="utf-8"))
    differ = [f"{k}: {old.get(k)!r} there, {plan.get(k)!r} now" for k in sorted({*old, *plan})
              if old.get(k) != plan.get(k)]
    if differ:
      raise ValueError(f"{output_dir} holds a run with other settings ({'; '.join(differ)}); "
                       "resume it with the same settings or write to a new --output folder")
    return
  write_text_atomically(path, json.dumps(plan, indent=2, ensure_ascii=False) + "\n")


def _marker(output_dir: Path, index: int, count: int) -> Path:
  return output_dir / STATE_DIR / shard_name(index, count).replace(".jsonl", ".done")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSummary:
  """Where a sharded run stands, over every shard finished so far (by any host)."""

  output_dir: str
  num_shards: int
  done: tuple[int, ...]
  ran: tuple[int, ...]            # shards this call translated
  planned: dict[str, int]         # language -> units
  written: dict[str, int]
  dropped: dict[str, dict[str, int]]  # language -> reason -> count
  sentences: int
  seconds: float                  # translating time of the shards this call ran
  ran_sentences: int

  @property
  def complete(self) -> bool:
    return len(self.done) == self.num_shards

  @property
  def data_dir(self) -> str:
    return os.path.join(self.output_dir, DATA_DIR)


def run_shards(units: Sequence[Unit], output_dir: str | os.PathLike, worker: Worker, *,
               settings: Mapping[str, Any], examples_per_shard: int = 1000,
               num_shards: int | None = None, host_index: int = 0, host_count: int = 1,
               log: Callable[[str], None] | None = None) -> RunSummary:
  """Runs `worker` on this host's unfinished shards and writes them (see module doc)."""
  if not 0 <= host_index < host_count:
    raise ValueError(f"host_index={host_index}, host_count={host_count}: need "
                     "0 <= host_index < host_count")
  if not units:
    raise ValueError("nothing to translate: no input records are left after checks and caps")
  log = log or (lambda line: print(line, file=sys.stderr, flush=True))
  count = num_shards or max(1, -(-len(units) // examples_per_shard))
  count = min(count, len(units))
  out = Path(output_dir)
  _check_plan(out, {**settings, "units": len(units), "num_shards": count,
                    "fingerprint": _fingerprint(units)})
  (out / DATA_DIR).mkdir(parents=True, exist_ok=True)
  (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
  bounds = [len(units) * i // count for i in range(count + 1)]
  ran, seconds, ran_sentences = [], 0.0, 0
  mine = [i for i in range(count) if i % host_count == host_index]
  for position, index in enumerate(mine):
    data = out / DATA_DIR / shard_name(index, count)
    if _marker(out, index, count).exists() and data.exists():
      continue
    shard = units[bounds[index]:bounds[index + 1]]
    start = time.perf_counter()
    result = worker(shard)
    elapsed = time.perf_counter() - start
    reporting.write_jsonl(data, result.records)
    planned = Counter(u.target_language for u in shard)
    written = Counter(r.get("language", "") for r in result.records)
    dropped: dict[str, dict[str, int]] = defaultdict(dict)
    for (language, reason), n in sorted(result.dropped.items()):
      dropped[language][reason] = n
    marker = {"planned": dict(planned), "written": dict(written), "dropped": dropped,
              "sentences": result.sentences, "seconds": round(elapsed, 3)}
    write_text_atomically(_marker(out, index, count), json.dumps(marker) + "\n")
    ran.append(index)
    seconds += elapsed
    ran_sentences += result.sentences
    rate = result.sentences / elapsed if elapsed else float("inf")
    left = len(mine) - position - 1
    log(f"shard {index + 1}/{count}: {len(shard)} examples, {result.sentences} sentences, "
        f"{rate:.1f} sentences/s; {left} of this host's shards left"
        + (f", about {left * elapsed:.0f}s" if left else ""))
  return summarise(out, count, ran=ran, seconds=seconds, ran_sentences=ran_sentences)


def summarise(output_dir: str | os.PathLike, num_shards: int, *, ran: Sequence[int] = (),
              seconds: float = 0.0, ran_sentences: int = 0) -> RunSummary:
  """Adds up the done markers of an output folder."""
  out = Path(output_dir)
  done, sentences = [], 0
  planned: Counter = Counter()
  written: Counter = Counter()
  dropped: dict[str, Counter] = defaultdict(Counter)
  for index in range(num_shards):
    marker = _marker(out, index, num_shards)
    if not marker.exists():
      continue
    facts = json.loads(marker.read_text(encoding="utf-8"))
    done.append(index)
    planned.update(facts["planned"])
    written.update(facts["written"])
    sentences += facts["sentences"]
    for language, reasons in facts["dropped"].items():
      dropped[language].update(reasons)
  return RunSummary(output_dir=str(out), num_shards=num_shards, done=tuple(done),
                    ran=tuple(ran), planned=dict(sorted(planned.items())),
                    written=dict(sorted(written.items())),
                    dropped={k: dict(v) for k, v in sorted(dropped.items())},
                    sentences=sentences, seconds=seconds, ran_sentences=ran_sentences)


# ----------------------------------------------------------------------------- translation


def translate_units(backend: Backend, units: Sequence[Unit],
                    fields_of: Callable[[Unit], Sequence[str]], *, batch_size: int = 32,
                    split: bool = True) -> tuple[list[dict[str, str]], int]:
  """Each unit's fields (`fields_of(unit)`) from its source into its target language.

  Units with the same languages and fields are translated together, a field at a time.
  Returns {field: translation} per unit, and the number of sentences translated.
  """
  groups: dict[tuple[str, str, tuple[str, ...]], list[int]] = defaultdict(list)
  for i, unit in enumerate(units):
    groups[(unit.source_language, unit.target_language, tuple(fields_of(unit)))].append(i)
  outputs: list[dict[str, str]] = [{} for _ in units]
  sentences = 0
  for (source, target, fields), members in groups.items():
    for field in fields:
      translated = translate_texts(backend, [units[i].record[field] for i in members],
                                   source, target, batch_size=batch_size, split=split)
      sentences += translated.sentences
      for i, text in zip(members, translated.texts):
        outputs[i][field] = text
  return outputs, sentences


def translation_worker(backend: Backend, fields: Sequence[str], *, batch_size: int = 32,
                       split: bool = True) -> Worker:
  """Translates the fields of each unit's record; drops and counts bad translations."""

  def work(units: Sequence[Unit]) -> ShardResult:
    outputs, sentences = translate_units(backend, units, lambda unit: fields,
                                         batch_size=batch_size, split=split)
    result = ShardResult(records=[], sentences=sentences)
    for unit, output in zip(units, outputs):
      problems = [output_problem(unit.record[f], output[f]) for f in fields]
      problem = next((p for p in problems if p), None)
      if problem:
        result.dropped[(unit.target_language, problem)] += 1
        continue
      record = {k: v for k, v in unit.record.items() if k not in fields}
      record.update(output)
      record.update(id=unit.key, source_id=unit.source_id, language=unit.target_language,
                    source_language=unit.source_language,
                    original={f: unit.record[f] for f in fields})
      result.records.append(record)
    return result

  return work


def format_summary(summary: RunSummary, *, title: str, backend: str,
                   skipped: Skipped = Skipped()) -> tuple[dict[str, Any], str]:
  """The report of a sharded run: JSON facts and markdown."""
  rows, facts = [], []
  for language, planned in summary.planned.items():
    dropped = summary.dropped.get(language, {})
    written = summary.written.get(language, 0)
    rows.append([language, planned, written, *(dropped.get(r, 0) for r in DROP_REASONS),
                 written / planned if planned else None])
    facts.append({"language": language, "planned": planned, "written": written,
                  "dropped": dropped})
  rate = summary.ran_sentences / summary.seconds if summary.seconds else None
  report = {"backend": backend, "output": summary.data_dir, "num_shards": summary.num_shards,
            "shards_done": len(summary.done), "complete": summary.complete,
            "languages": facts, "sentences": summary.sentences,
            "sentences_per_second_this_run": rate,
            "skipped_input_records": skipped.count, "skipped_examples": list(skipped.examples)}
  lines = [f"# {title}", "", f"Backend: `{backend}`. Output: `{summary.data_dir}` "
           f"({len(summary.done)} of {summary.num_shards} shards done"
           + ("" if summary.complete else "; run again, or wait for the other hosts") + ").",
           f"Sentences translated: {summary.sentences}"
           + (f"; this run {rate:.1f} sentences/s." if rate else "."), ""]
  lines.append(reporting.data_table(
      ["language", "planned", "written", *(f"dropped: {r}" for r in DROP_REASONS), "kept"], rows))
  if skipped.count:
    lines += ["", f"Skipped input records: {skipped.count}. First:"]
    lines += [f"- {why}" for why in skipped.examples]
  return report, "\n".join(lines)


# ----------------------------------------------------------------------------- whole steps


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardPlan:
  """How a step's units are cut into shards and which hosts run which."""

  examples_per_shard: int = 1000
  num_shards: int | None = None    # instead of examples_per_shard
  host_index: int = 0
  host_count: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepResult:
  """A step's run and the reports it wrote (name -> (JSON facts, markdown), and files)."""

  summary: RunSummary
  reports: dict[str, tuple[dict[str, Any], str]]
  report_paths: dict[str, Path]


def write_step_report(output_dir: str | os.PathLike, name: str,
                      report_and_markdown: tuple[dict[str, Any], str]) -> dict[str, Path]:
  """Writes `<name>_report.json` and `<name>_report.md` into the step's output folder."""
  report, markdown = report_and_markdown
  return reporting.write_report(output_dir, f"{name}_report", report, markdown)


def translate_dataset(backend: Backend, output_dir: str | os.PathLike, *,
                      fields: Sequence[str], source_language: str,
                      target_languages: Sequence[str], input_path: str | None = None,
                      task: str | None = None, split: str = "train", caps: Caps = Caps(),
                      id_key: str | None = None, tolerant: bool = False,
                      batch_size: int = 32, split_sentences: bool = True,
                      shards: ShardPlan = ShardPlan()) -> StepResult:
  """Translates a data file, folder or SeqIO task into `target_languages`, resumably.

  Reads the input, applies the caps, runs this host's unfinished shards and writes
  `translation_report.{md,json}`; rerunning continues where a run stopped. The result's
  summary says whether every host's shards are done (`summary.complete`).
  """
  if not fields:
    raise ValueError("--fields: name at least one text field to translate")
  records, skipped = read_input(input_path, task=task, split=split, tolerant=tolerant)
  units, more = plan_units(records, fields=fields, source_language=source_language,
                           target_languages=target_languages, caps=caps, id_key=id_key,
                           tolerant=tolerant)
  settings = {"step": "translate", "input": input_path or f"task:{task}:{split}",
              "fields": list(fields), "backend": backend.description,
              "split_sentences": split_sentences,
              "caps": [caps.max_per_language, sorted(caps.uncapped), caps.dataset_key,
                       caps.seed]}
  summary = run_shards(
      units, output_dir, translation_worker(backend, fields, batch_size=batch_size,
                                            split=split_sentences),
      settings=settings, examples_per_shard=shards.examples_per_shard,
      num_shards=shards.num_shards, host_index=shards.host_index,
      host_count=shards.host_count)
  report = format_summary(summary, title="Translation", backend=backend.description,
                          skipped=skipped + more)
  return StepResult(summary=summary, reports={"translation": report},
                    report_paths=write_step_report(output_dir, "translation", report))
