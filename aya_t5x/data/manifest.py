"""The task manifest: a user's tasks (with their splits), added languages and mixtures.

One JSON file, written by `aya-t5x tasks add`, `languages add` and `mixture add`, read by
every process of a run through `TASK_MANIFEST` (gin) so that every host, `eval` and
`infer` register the same tasks, languages and mixtures:

    {"languages": [{"code": "tn", "name": "Tswana", "script": "Latn", "group": "LR",
                    "in_mt5": false}],
     "tasks": [{"name": "tswana_qa", "language": "tn",
                "splits": {"train": "data/train.jsonl", "validation": "data/dev.jsonl"}}],
     "mixtures": [{"name": "my_mix", "tasks": {"tswana_qa": 1.0, "zulu_qa": 2.0},
                   "rate_by": "examples"}]}

Relative paths are relative to the manifest's folder, so a manifest moves with its data.
A task's splits stay apart (a folder holding `train.*`, `validation.*`, `test.*` gives
three splits; an older entry's `"path"` is still read as before). Every change is all
or nothing: it is checked against the data first (fields present, every split keeps at
least one example after the filters) and then written to a temporary file that replaces
the manifest in one step, so a failed command leaves the manifest as it was.

`load_manifest` (gin: `aya_t5x.data.manifest.load_manifest`) registers everything: the
languages, a SeqIO task per task (per language with `language_key`) and the mixtures,
whose rates follow their `rate_by`: none (the rates as given), `examples` or `tokens`
(size times the given weight) or `temperature:T` (size^(1/T) times the weight).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gin
from aya_t5x import registry
from aya_t5x.atomic_files import write_text_atomically
from aya_t5x.data import languages, mixing, readers, registration, sources
from aya_t5x.data.templates import Template

TASK_KEYS = {"name", "path", "splits", "language", "inputs_key", "targets_key",
             "language_key", "template", "tolerant", "dataset", "kind"}

# Tasks of another kind than input/target examples ("kind" in the entry): kind -> the
# function that registers such an entry (its path resolved) with a vocabulary. Each kind's
# package registers itself (`aya_t5x.preference.tasks`: "preference"; the command line
# imports it).
_KIND_REGISTRARS: dict[str, Callable[[Mapping[str, Any], Any], Any]] = {}


def register_task_kind(kind: str, registrar: Callable[[Mapping[str, Any], Any], Any]) -> None:
  """Lets manifests hold tasks of `kind`, registered by `registrar(entry, vocabulary)`."""
  _KIND_REGISTRARS[kind] = registrar


def _registrar(kind: str, where: str) -> Callable[[Mapping[str, Any], Any], Any]:
  try:
    return registry.lookup(_KIND_REGISTRARS, kind, what="task kind",
                           empty="(none; import aya_t5x.preference.tasks)")
  except KeyError as e:
    raise ValueError(f"{where}: {e.args[0]}") from None
MIXTURE_KEYS = {"name", "tasks", "rate_by"}
RATE_BY = ("examples", "tokens", "temperature:T")


# ----------------------------------------------------------------------------- the file


@dataclasses.dataclass(frozen=True, kw_only=True)
class Manifest:
  """A manifest as read: its entries checked, nothing registered."""

  path: Path
  languages: tuple[languages.Language, ...] = ()
  tasks: tuple[dict[str, Any], ...] = ()
  mixtures: tuple[dict[str, Any], ...] = ()

  def resolve(self, path: str) -> str:
    """A path of the manifest, relative to its folder unless absolute or a URL."""
    if "://" in path or os.path.isabs(path):
      return path
    return os.path.normpath(self.path.parent.absolute() / path)

  def relative(self, path: str | os.PathLike) -> str:
    """How the manifest stores `path`: relative to its folder where that is possible."""
    path = os.fspath(path)
    if "://" in path:
      return path
    try:
      return os.path.relpath(Path(path).absolute(), self.path.parent.absolute())
    except ValueError:  # another drive
      return str(Path(path).absolute())

  def data_of(self, entry: Mapping[str, Any]) -> sources.PathsArg:
    """A task's data as `sources.scan` takes it: {split: path}, or the one path."""
    if entry.get("splits"):
      return {split: self.resolve(p) for split, p in entry["splits"].items()}
    return self.resolve(entry["path"])

  def task(self, name: str) -> dict[str, Any] | None:
    return next((e for e in self.tasks if e["name"] == name), None)

  def mixture(self, name: str) -> dict[str, Any] | None:
    return next((e for e in self.mixtures if e["name"] == name), None)

  def to_json(self) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if self.languages:
      data["languages"] = [lang.to_json() for lang in self.languages]
    data["tasks"] = list(self.tasks)
    if self.mixtures:
      data["mixtures"] = list(self.mixtures)
    return data


def _check_task(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
  if not isinstance(entry, Mapping):
    raise ValueError(f"{where}: a task is a JSON object {{\"name\": ..., \"splits\": ...}}, "
                     f"not {json.dumps(entry)[:80]}")
  unknown = set(entry) - TASK_KEYS
  if unknown:
    raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; fields are "
                     f"{', '.join(sorted(TASK_KEYS))}")
  if not isinstance(entry.get("name"), str) or not entry["name"]:
    raise ValueError(f"{where}: field 'name' is required (a string)")
  if not registration.TASK_NAME.match(entry["name"]):
    raise ValueError(f"{where}: field 'name' {entry['name']!r}: use letters, digits, '_', "
                     "'.' and ':' only")
  splits = entry.get("splits")
  if splits is not None:
    if not (isinstance(splits, Mapping) and splits and all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in splits.items())):
      raise ValueError(f"{where}: field 'splits' must be {{\"train\": \"path\", "
                       "\"validation\": \"path\", \"test\": \"path\"}} (one or more)")
    for split in splits:
      if split not in sources.SPLITS:
        raise ValueError(f"{where}: split {split!r}; splits are {', '.join(sources.SPLITS)}")
  elif not isinstance(entry.get("path"), str) or not entry["path"]:
    raise ValueError(f"{where}: field 'splits' ({{split: path}}) or 'path' is required")
  template = entry.get("template")
  if template is not None and not (
      isinstance(template, dict) and {"inputs", "targets"} <= set(template)
      <= {"inputs", "targets", "language"}
      and all(isinstance(v, str) for v in template.values())):
    raise ValueError(f"{where}: field 'template' must be {{\"inputs\": \"...\", "
                     "\"targets\": \"...\"}} (strings; \"language\" may be added)")
  return dict(entry)


def parse_rate_by(rate_by: str | None) -> tuple[str | None, float]:
  """('examples'|'tokens'|'temperature'|None, temperature) of a `rate_by` value."""
  if rate_by in (None, ""):
    return None, 1.0
  if rate_by in ("examples", "tokens"):
    return rate_by, 1.0
  kind, _, value = str(rate_by).partition(":")
  if kind == "temperature":
    try:
      temperature = float(value)
    except ValueError:
      temperature = 0.0
    if temperature > 0:
      return "temperature", temperature
  raise ValueError(f"--rate_by {rate_by!r}: choose examples, tokens or temperature:T with "
                   "T > 0 (temperature:3 lifts small tasks, as mT5 did with T=3.3)")


def _check_mixture(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
  if not isinstance(entry, Mapping):
    raise ValueError(f"{where}: a mixture is a JSON object {{\"name\", \"tasks\"}}")
  unknown = set(entry) - MIXTURE_KEYS
  if unknown:
    raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; fields are "
                     f"{', '.join(sorted(MIXTURE_KEYS))}")
  name = entry.get("name")
  if not isinstance(name, str) or not registration.TASK_NAME.match(name):
    raise ValueError(f"{where}: field 'name' is required: letters, digits, '_', '.', ':'")
  tasks = entry.get("tasks")
  if not (isinstance(tasks, Mapping) and tasks and all(
      isinstance(t, str) and isinstance(r, int | float) and not isinstance(r, bool) and r > 0
      for t, r in tasks.items())):
    raise ValueError(f"{where}: field 'tasks' must be {{\"task\": rate, ...}} with positive "
                     "rates")
  try:
    parse_rate_by(entry.get("rate_by"))
  except ValueError as e:
    raise ValueError(f"{where}: {e}") from None
  return dict(entry)


def _load_json(path: Path) -> Any:
  data = path.read_bytes()
  try:
    return json.loads(data.decode("utf-8"))
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise ValueError(f"{path}:{line}: not UTF-8 text "
                     f"({e.reason} at byte {e.start}); the manifest is UTF-8 JSON") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: broken JSON ({e.msg}); the manifest is "
                     '{"tasks": [...]}') from None


def read(manifest: str | os.PathLike) -> Manifest:
  """The manifest, checked (empty when the file does not exist yet); registers nothing."""
  path = Path(manifest)
  if not path.exists():
    return Manifest(path=path)
  data = _load_json(path)
  if not isinstance(data, dict) or not isinstance(data.get("tasks", []), list) or not (
      {"tasks", "languages", "mixtures"} & set(data)):
    raise ValueError(f"{path}: a manifest is a JSON object {{\"tasks\": [...], "
                     "\"languages\": [...], \"mixtures\": [...]}}")
  unknown = set(data) - {"tasks", "languages", "mixtures"}
  if unknown:
    raise ValueError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}; sections "
                     "are tasks, languages, mixtures")
  for section in ("languages", "mixtures"):
    if not isinstance(data.get(section, []), list):
      raise ValueError(f"{path}: {section!r} must be a list")
  added = tuple(languages.language_from_json(e, f"{path}: language {i}", str(path))
                for i, e in enumerate(data.get("languages", [])))
  tasks = tuple(_check_task(e, f"{path}: task {i}") for i, e in enumerate(data["tasks"])
                ) if "tasks" in data else ()
  mixtures = tuple(_check_mixture(e, f"{path}: mixture {i}")
                   for i, e in enumerate(data.get("mixtures", [])))
  names = [e["name"] for e in (*tasks, *mixtures)]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(f"{path}: {', '.join(repeated)} named twice (tasks and mixtures share "
                     "one name space)")
  return Manifest(path=path, languages=added, tasks=tasks, mixtures=mixtures)


def read_tasks(manifest: str | os.PathLike) -> list[dict[str, Any]]:
  """The task entries of a manifest (empty when the file does not exist yet)."""
  return list(read(manifest).tasks)


def write(manifest: Manifest) -> None:
  """Writes the manifest atomically: a temporary file beside it replaces it in one step."""
  write_text_atomically(manifest.path,
                        json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n")


def use_languages(manifest: Manifest) -> None:
  """Makes the manifest's added languages known to this process."""
  if manifest.languages:
    languages.add_user_languages(manifest.languages)


# ----------------------------------------------------------------------------- languages


def add_language(manifest_path: str | os.PathLike, language: languages.Language, *,
                 replace: bool = False) -> Manifest:
  """Adds a language to the manifest (created if new); all or nothing."""
  manifest = read(manifest_path)
  kept = [lang for lang in manifest.languages if lang.code != language.code]
  if len(kept) != len(manifest.languages) and not replace:
    raise ValueError(f"{manifest.path}: language {language.code} is there already; pass "
                     "--replace to change it")
  languages.clear_user_languages()
  languages.add_user_languages(kept)
  languages.check_addable(language)
  updated = dataclasses.replace(manifest, languages=(*kept, language))
  write(updated)
  languages.add_user_languages(updated.languages)
  return updated


# ----------------------------------------------------------------------------- tasks


def split_files(folder: str | os.PathLike) -> dict[str, str] | None:
  """{split: path} of a folder holding `train.*`, `validation.*`, `test.*` (files or
  folders; `dev.*`/`valid.*` count as validation), or None when it holds none of them.

  Raises ValueError for two files of one split, or for data files beside the split files
  (they would be read by no split).
  """
  folder = Path(folder)
  if not folder.is_dir() or (folder / "dataset_dict.json").exists():
    return None  # a file, or a Hugging Face DatasetDict folder whose splits readers know
  found: dict[str, list[Path]] = {}
  strays = []
  for child in sorted(folder.iterdir()):
    if child.name.startswith("."):
      continue
    stem = child.name.split(".", 1)[0]
    try:
      split = sources.normalise_split(stem)
    except ValueError:
      split = None
    is_data = child.is_dir() or child.name.endswith(readers.SUFFIXES)
    if split and is_data:
      found.setdefault(split, []).append(child)
    elif is_data:
      strays.append(child.name)
  if not found:
    return None
  for split, paths in found.items():
    if len(paths) > 1:
      raise ValueError(f"{folder}: {len(paths)} files for split {split}: "
                       f"{', '.join(p.name for p in paths)}; keep one")
  if strays:
    raise ValueError(f"{folder}: {', '.join(strays)} belong to no split; name each file "
                     "train.*, validation.* or test.*, or move it out")
  return {split: str(paths[0]) for split, paths in sorted(
      found.items(), key=lambda kv: sources.SPLITS.index(kv[0]))}


def splits_of(path: str | None = None, *, train: str | None = None,
              validation: str | None = None, test: str | None = None) -> dict[str, str]:
  """The task's {split: path} from `--path` (a file: train; a folder: its split files) or
  from `--train/--validation/--test`; never both."""
  given = {s: p for s, p in (("train", train), ("validation", validation), ("test", test))
           if p}
  if path and given:
    raise ValueError("give --path (a file, or a folder of train.*/validation.*/test.*) or "
                     "--train/--validation/--test, not both")
  if given:
    return given
  if not path:
    raise ValueError("give the data: --train FILE [--validation FILE] [--test FILE], or "
                     "--path FOLDER holding train.*, validation.*, test.*")
  readers.list_files(path)  # a missing path or unsupported file fails here, with the fix
  return split_files(path) or {"train": path}


def _empty_reason(index: sources.SourceIndex, split: str, path: str) -> str:
  report = index.report
  if report.read == 0 and not report.skipped:
    return f"{path} is empty (no records)"
  if report.skipped and not report.removed:
    return (f"all {report.skipped} record(s) of {path} are malformed:\n"
            + report.format())
  hint = ("; a language outside mT5's 101 needs `aya-t5x languages add CODE --name NAME "
          "--script SCRIPT --group LR --manifest FILE` first"
          if "mt5_languages" in report.removed_by_filter() else "")
  return (f"no example of {path} is left after the filters (read {report.read}, "
          f"malformed {report.skipped}, removed {sum(report.removed.values())}){hint}:\n"
          + report.format())


def check_task(manifest: Manifest, entry: Mapping[str, Any]
               ) -> tuple[dict[str, Any], sources.SourceIndex]:
  """Checks a task entry against its data; returns it (language normalised) and its scan.

  Every split must keep at least one example after the filters; the error says why
  not (an empty file, malformed records, the filters that removed them).
  """
  entry = _check_task({k: v for k, v in entry.items() if v is not None}, "task")
  if entry.get("language"):
    entry["language"] = languages.get_language(entry["language"]).code
  spec = spec_of_entry(entry)
  data = manifest.data_of(entry)
  paths = data if isinstance(data, Mapping) else {None: data}
  tolerant = bool(entry.get("tolerant"))
  for split, path in paths.items():
    _check_fields_present(spec, path)
    single = sources.scan(spec, {split: path} if split else path, tolerant=tolerant)
    if single.report.kept == 0:
      raise ValueError(f"task {entry['name']}: split {split or 'train'}: "
                       f"{_empty_reason(single, split or 'train', path)}")
  index = sources.scan(spec, data, tolerant=tolerant)
  return entry, index


def _put_task(manifest: Manifest, entry: dict[str, Any], *, replace: bool) -> None:
  """Writes `entry` into the manifest (a new task, or in place of its namesake)."""
  tasks = list(manifest.tasks)
  names = [e["name"] for e in tasks]
  if manifest.mixture(entry["name"]):
    raise ValueError(f"{manifest.path}: {entry['name']!r} is a mixture there; choose another "
                     "task name")
  if entry["name"] in names:
    if not replace:
      raise ValueError(f"{manifest.path}: a task {entry['name']!r} exists already; pass "
                       "--replace to overwrite it")
    tasks[names.index(entry["name"])] = entry
  else:
    tasks.append(entry)
  write(dataclasses.replace(manifest, tasks=tuple(tasks)))


def add_task(manifest_path: str | os.PathLike, entry: Mapping[str, Any], *,
             replace: bool = False) -> tuple[dict[str, Any], sources.SourceIndex]:
  """Checks a task against its data and writes it into the manifest; all or nothing.

  `entry["splits"]` holds paths as the user gave them (relative to the current folder);
  the manifest stores them relative to its own folder. Returns the stored entry and the
  scan of its data (for the report).
  """
  manifest = read(manifest_path)
  use_languages(manifest)
  entry = dict(entry)
  if entry.get("splits"):
    entry["splits"] = {s: manifest.relative(p) for s, p in entry["splits"].items()}
  elif entry.get("path"):
    entry["path"] = manifest.relative(entry["path"])
  entry, index = check_task(manifest, entry)
  _put_task(manifest, entry, replace=replace)
  return entry, index


def add_task_of_kind(manifest_path: str | os.PathLike, entry: Mapping[str, Any], *,
                     replace: bool = False) -> dict[str, Any]:
  """Writes a task of another kind (`entry["kind"]`, its data checked by the caller) into
  the manifest, its path relative to the manifest; all or nothing."""
  manifest = read(manifest_path)
  _registrar(entry["kind"], f"task {entry.get('name')!r}")
  entry = _check_task({k: v for k, v in entry.items() if v is not None}, "task")
  entry["path"] = manifest.relative(entry["path"])
  _put_task(manifest, entry, replace=replace)
  return entry


def _check_fields_present(spec: sources.SourceSpec, path: str, probe: int = 20) -> None:
  """Reads the first records and raises if the spec's fields are not there (a typo)."""
  for count, (location, record) in enumerate(readers.iter_records(path)):
    if count >= probe:
      break
    if isinstance(record, readers.MalformedRecord):
      continue
    missing = [f.name for f in spec.schema if f.required and f.name not in record]
    if missing:
      raise ValueError(f"{location}: the record has no field {missing[0]!r} (fields: "
                       f"{', '.join(sorted(record))}); fix --inputs_key/--targets_key/"
                       "--language_key or the template")
    return


def spec_of_entry(entry: Mapping[str, Any]) -> sources.SourceSpec:
  """The `SourceSpec` of a manifest task (what `load_manifest` registers)."""
  template = entry.get("template")
  return registration.jsonl_spec(
      entry["name"], language=entry.get("language"),
      inputs_key=entry.get("inputs_key") or "inputs",
      targets_key=entry.get("targets_key") or "targets",
      language_key=entry.get("language_key"), dataset=entry.get("dataset"),
      template=Template(id=entry["name"], **template) if template else None)


def register_output(manifest: str | os.PathLike, name: str, path: str | os.PathLike, *,
                    languages_written: Sequence[str], language_key: str = "language",
                    inputs_key: str = "inputs", targets_key: str = "targets",
                    replace: bool = False) -> str:
  """Adds a dataset a tool wrote (translated, filtered, annotated) to `manifest` in one step.

  One SeqIO task per language (`name.sw`) and, with several languages, a mixture `name`
  over them, registered when a run loads the manifest. Writing the same file again
  refreshes its entry; another file under a taken name needs `replace`. Returns the line
  that tells the user how to train on it.
  """
  current = read(manifest)
  existing = current.task(name)
  same = existing is not None and existing.get("splits", {}).get("train") == \
      current.relative(path)
  add_task(manifest, {"name": name, "splits": {"train": os.fspath(path)},
                      "language_key": language_key, "inputs_key": inputs_key,
                      "targets_key": targets_key, "dataset": name},
           replace=replace or same)
  tasks = [f"{name}.{languages.get_language(code).code}" for code in languages_written]
  train_on = tasks[0] if len(tasks) == 1 else name
  return (f"registered {name} in {manifest}: SeqIO task(s) {', '.join(tasks)}"
          + (f" and mixture {name}" if len(tasks) > 1 else "") + "; train on it with "
          f"--gin_file mixtures/vocabulary.gin --gin.TASK_MANIFEST=\"'{manifest}'\" "
          f"--gin.MIXTURE_OR_TASK_NAME=\"'{train_on}'\"")


# ----------------------------------------------------------------------------- mixtures


def _member(manifest: Manifest, planned: Mapping[str, registration.SourceTasks], name: str
            ) -> registration.SourceTasks:
  """The planned tasks a mixture member stands for: a task, or one language of one."""
  if name in planned:
    return planned[name]
  prefix, _, code = name.rpartition(".")
  if prefix in planned:
    found = [t for t in planned[prefix].tasks if t.name == name]
    if found:
      return dataclasses.replace(planned[prefix], tasks=tuple(found),
                                 rates={name: 1.0}, mixture=None)
  known = [t.name for p in planned.values() for t in p.tasks]
  known += [p for p in planned if p not in known]
  raise ValueError(f"{manifest.path}: mixture member {name!r} is no task of the manifest; "
                   f"tasks: {', '.join(sorted(set(known))) or '(none)'} (add it with "
                   "`aya-t5x tasks add` first)")


def _tokens(member: registration.SourceTasks, vocabulary) -> int:
  total = 0
  for info in member.tasks:
    for example in registration.examples_of(info, member.index, "train"):
      total += len(vocabulary.encode(example.inputs)) + len(vocabulary.encode(example.targets))
  return total


def plan_mixture(manifest: Manifest, name: str,
                 planned: Mapping[str, registration.SourceTasks], *,
                 vocabulary=None) -> mixing.MixturePlan:
  """The rates of a manifest mixture, from its members' train sizes and `rate_by`.

  `planned` maps the manifest's task names to their plans (scanned data); a vocabulary
  is needed for `rate_by: tokens`.
  """
  entry = manifest.mixture(name)
  if entry is None:
    raise ValueError(f"{manifest.path}: no mixture {name!r}; mixtures there: "
                     f"{', '.join(m['name'] for m in manifest.mixtures) or '(none)'}")
  kind, temperature = parse_rate_by(entry.get("rate_by"))
  members = {m: _member(manifest, planned, m) for m in entry["tasks"]}
  for member, plan in members.items():
    if not plan.rates:
      raise ValueError(f"mixture {name}: task {member} has no train split; a mixture "
                       "samples train splits (evaluate it with `aya-t5x eval --task`)")
  weights = {m: float(r) for m, r in entry["tasks"].items()}
  if kind == "tokens":
    if vocabulary is None:
      raise ValueError(f"mixture {name} is rated by tokens: give the vocabulary "
                       "(--vocabulary, or VOCABULARY_PATH in gin)")
    rates = mixing.proportional({m: _tokens(p, vocabulary) for m, p in members.items()},
                                boosts=weights)
  elif kind == "examples":
    rates = mixing.proportional({m: p.train_size for m, p in members.items()},
                                boosts=weights)
  elif kind == "temperature":
    rates = mixing.temperature({m: p.train_size for m, p in members.items()},
                               temperature=temperature, boosts=weights)
  else:
    total = sum(weights.values())
    rates = {m: w / total for m, w in weights.items()}
  return mixing.MixturePlan(
      name=name, scheme=f"manifest mixture ({entry.get('rate_by') or 'rates as given'})",
      source_weights={m: 100.0 * r for m, r in rates.items()},
      task_rates=mixing.compose(rates, {m: p.rates for m, p in members.items()}),
      source_tasks=members, strategy=str(entry.get("rate_by") or "given"))


def add_mixture(manifest_path: str | os.PathLike, name: str, tasks: Mapping[str, float], *,
                rate_by: str | None = None, replace: bool = False,
                vocabulary=None) -> tuple[Manifest, mixing.MixturePlan]:
  """Checks a mixture against the manifest's tasks and writes it; all or nothing."""
  manifest = read(manifest_path)
  use_languages(manifest)
  entry = _check_mixture({"name": name, "tasks": dict(tasks), "rate_by": rate_by}
                         if rate_by else {"name": name, "tasks": dict(tasks)}, "mixture")
  if manifest.task(name):
    raise ValueError(f"{manifest.path}: {name!r} is a task there; choose another mixture name")
  mixtures = [m for m in manifest.mixtures if m["name"] != name]
  if len(mixtures) != len(manifest.mixtures) and not replace:
    raise ValueError(f"{manifest.path}: a mixture {name!r} exists already; pass --replace "
                     "to overwrite it")
  updated = dataclasses.replace(manifest, mixtures=(*mixtures, entry))
  planned = plan_tasks(updated, [t for t in entry["tasks"]])
  plan = plan_mixture(updated, name, planned, vocabulary=vocabulary)
  write(updated)
  return updated, plan


def plan_tasks(manifest: Manifest, members: Sequence[str] | None = None
               ) -> dict[str, registration.SourceTasks]:
  """Scans the manifest's tasks (those `members` name, or all) without registering."""
  wanted = None if members is None else {m for m in members} | {
      m.rpartition(".")[0] for m in members}
  out = {}
  for entry in manifest.tasks:
    if (wanted is not None and entry["name"] not in wanted) or entry.get("kind"):
      continue
    out[entry["name"]] = registration.plan_source_tasks(
        spec_of_entry(entry), manifest.data_of(entry), prefix=entry["name"],
        tolerant=bool(entry.get("tolerant")))
  return out


# ----------------------------------------------------------------------------- loading


def register_mixture(plan: mixing.MixturePlan) -> None:
  """Registers a planned mixture with SeqIO (its tasks registered already)."""
  import seqio

  if plan.name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(plan.name)
  seqio.MixtureRegistry.add(plan.name, list(plan.task_rates.items()))


@gin.configurable(module="aya_t5x.data.manifest")
def load_manifest(manifest: str = gin.REQUIRED, vocabulary=gin.REQUIRED
                  ) -> list[registration.SourceTasks]:
  """Registers a manifest's languages, tasks and mixtures; returns each task's plan."""
  read_back = read(manifest)
  if not read_back.path.exists():
    raise FileNotFoundError(f"TASK_MANIFEST {manifest} does not exist; write it with "
                            "`aya-t5x tasks add NAME ... --manifest FILE`")
  use_languages(read_back)
  planned = {}
  for e in read_back.tasks:
    if e.get("kind"):
      _registrar(e["kind"], f"{read_back.path}: task {e['name']}")(
          {**e, "path": read_back.resolve(e["path"])}, vocabulary)
      continue
    planned[e["name"]] = registration.register_jsonl_task(
        e["name"], read_back.data_of(e), vocabulary=vocabulary, language=e.get("language"),
        inputs_key=e.get("inputs_key") or "inputs",
        targets_key=e.get("targets_key") or "targets",
        language_key=e.get("language_key"), tolerant=bool(e.get("tolerant")),
        dataset=e.get("dataset"),
        template=Template(id=e["name"], **e["template"]) if e.get("template") else None)
  for entry in read_back.mixtures:
    register_mixture(plan_mixture(read_back, entry["name"], planned, vocabulary=vocabulary))
  return list(planned.values())
