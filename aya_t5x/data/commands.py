"""The `tasks` and `mixture` subcommands of `aya-t5x` (wired in by `aya_t5x.cli`).

    aya-t5x tasks add NAME --train FILE [--validation FILE] [--test FILE] --language sw
    aya-t5x tasks add NAME --path FOLDER_OF_SPLITS --language tn [--inputs_key q ...]
    aya-t5x tasks list [--manifest aya_tasks.json]
    aya-t5x tasks inspect NAME [--path DATA] [--vocabulary SPM] [-n 3]
    aya-t5x languages add CODE --name NAME --script SCRIPT --group LR [--in_mt5 no]
    aya-t5x languages list | show CODE
    aya-t5x mixture add NAME --task TASK=RATE [...] [--rate_by examples|tokens|temperature:T]
    aya-t5x mixture report SCHEME_OR_MIXTURE --steps S --batch B [--source NAME=PATH ...]
    aya-t5x cache --source NAME=PATH ... --vocabulary SPM --output_dir DIR [-- BEAM_FLAGS]

Handlers import the heavy libraries (seqio, tensorflow, matplotlib) only when they need
them, and raise ValueError / FileNotFoundError with messages that name the file, line or
field and the fix (the CLI prints those without a traceback).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from aya_t5x.command_flags import add_gin_flags as _add_gin_flags
from aya_t5x.command_flags import parse_gin, uses_gin

DEFAULT_MANIFEST = "aya_tasks.json"


def _as_value_error(error: KeyError) -> ValueError:
  return ValueError(error.args[0] if error.args else str(error))


# ----------------------------------------------------------------------------- tasks add


def _tasks_add(args: argparse.Namespace) -> int:
  from aya_t5x.data import manifest

  if args.kind == "preference":
    from aya_t5x.preference import commands as preference_commands
    return preference_commands.tasks_add(args)
  template = None
  if args.template_inputs or args.template_targets:
    if not (args.template_inputs and args.template_targets):
      raise ValueError("--template_inputs and --template_targets go together: give both")
    template = {"inputs": args.template_inputs, "targets": args.template_targets}
  splits = manifest.splits_of(args.path, train=args.train, validation=args.validation,
                              test=args.test)
  entry = {"name": args.name, "splits": splits, "language": args.language,
           "inputs_key": args.inputs_key, "targets_key": args.targets_key,
           "language_key": args.language_key, "template": template,
           "dataset": args.dataset, "tolerant": args.tolerant or None}
  try:
    entry, index = manifest.add_task(args.manifest, entry, replace=args.replace)
  except KeyError as e:  # an unknown language
    raise _as_value_error(e) from None
  counts = ", ".join(f"{split} {index.count(split=split)}" for split in index.splits())
  print(f"added task {entry['name']} to {args.manifest}: {counts} examples "
        f"(splits: {', '.join(f'{s}={p}' for s, p in entry['splits'].items())})")
  if "validation" not in entry["splits"]:
    print("no validation split: a run on it trains with train-eval off (add one with "
          "--validation FILE --replace)")
  print(index.report.format())
  print(f"Train on it with --gin_file mixtures/vocabulary.gin "
        f"--gin.VOCABULARY_PATH=\"'/path/sentencepiece.model'\" "
        f"--gin.TASK_MANIFEST=\"'{args.manifest}'\" "
        f"--gin.MIXTURE_OR_TASK_NAME=\"'{entry['name']}'\"")
  return 0


# ----------------------------------------------------------------------------- tasks list


def _tasks_list(args: argparse.Namespace) -> int:
  from aya_t5x.data import manifest, sources

  print("Sources (aya_t5x.tasks registers the recipe's six; register with a path, see "
        "docs/data.md):")
  for name in sources.source_names():
    spec = sources.get_source(name)
    print(f"  {spec.name:<18} {spec.title} — fields: {', '.join(spec.field_names())}")
  read_back = manifest.read(args.manifest)
  entries = read_back.tasks
  print(f"Tasks in {args.manifest}:" if entries else f"No tasks in {args.manifest} "
        "(add one with `aya-t5x tasks add`).")
  for entry in entries:
    where = entry.get("language") or f"language from field {entry.get('language_key')}"
    data = entry.get("splits") or {"data": entry.get("path")}
    print(f"  {entry['name']:<24} {' '.join(f'{s}={p}' for s, p in data.items())} ({where})")
  for mixture in read_back.mixtures:
    print(f"  mixture {mixture['name']:<16} " + ", ".join(
        f"{t}={r:g}" for t, r in mixture["tasks"].items())
        + f" (rate_by {mixture.get('rate_by') or 'rates as given'})")
  if args.registered:
    import seqio

    names = sorted(seqio.TaskRegistry.names())
    print(f"SeqIO tasks registered in this process: {len(names)}")
    for name in names:
      print(f"  {name}")
  return 0


# ----------------------------------------------------------------------------- tasks inspect


def _spec_and_paths(args: argparse.Namespace):
  from aya_t5x.data import manifest, sources

  read_back = manifest.read(args.manifest)
  manifest.use_languages(read_back)
  entry = read_back.task(args.name)
  if entry is not None:
    return manifest.spec_of_entry(entry), args.path or read_back.data_of(entry), \
        bool(entry.get("tolerant"))
  try:
    spec = sources.get_source(args.name)
  except KeyError as e:
    names = [e["name"] for e in read_back.tasks]
    raise ValueError(f"{_as_value_error(e)} Tasks in {args.manifest}: "
                     f"{', '.join(names) or '(none)'}") from None
  if not args.path:
    raise ValueError(f"{args.name} is a source: give its data with --path FILE_OR_FOLDER")
  return spec, args.path, False


def _lengths(values: list[int]) -> str:
  if not values:
    return "-"
  return (f"mean {statistics.fmean(values):.1f}, median {statistics.median(values):g}, "
          f"max {max(values)}")


def _tasks_inspect(args: argparse.Namespace) -> int:
  from aya_t5x.data import sources

  spec, paths, tolerant = _spec_and_paths(args)
  index = sources.scan(spec, paths, tolerant=tolerant or args.tolerant)
  vocabulary = None
  if args.vocabulary:
    from aya_t5x.vocab import vocabulary as vocab_lib

    vocabulary = vocab_lib.sentencepiece_vocabulary(args.vocabulary)
  print(index.report.format())
  split = args.split
  langs = index.languages(split)
  print(f"{split}: {index.count(split=split)} examples in {len(langs)} language(s): "
        + ", ".join(f"{lang} {index.count(split=split, language=lang)}" for lang in langs))
  shown = 0
  chars_in, chars_out, tokens_in, tokens_out = [], [], [], []
  for example in sources.iterate(index, split=split, language=args.language):
    if len(chars_in) >= args.sample:
      break
    chars_in.append(len(example.inputs))
    chars_out.append(len(example.targets))
    ids_in = ids_out = None
    if vocabulary is not None:
      ids_in = vocabulary.encode(example.inputs) + [vocabulary.eos_id]
      ids_out = vocabulary.encode(example.targets) + [vocabulary.eos_id]
      tokens_in.append(len(ids_in))
      tokens_out.append(len(ids_out))
    if shown < args.num_examples:
      shown += 1
      print(f"\n--- example {shown} ({example.location}; language {example.language}, "
            f"dataset {example.dataset})")
      raw = {k: (v if not isinstance(v, str) or len(v) < 200 else v[:200] + "...")
             for k, v in example.fields.items()}
      print(f"raw:       {raw}")
      print(f"inputs:    {example.inputs}")
      print(f"targets:   {example.targets}")
      if ids_in is not None:
        print(f"tokenized: inputs {ids_in[:48]}{' ...' if len(ids_in) > 48 else ''} "
              f"({len(ids_in)} tokens)")
        print(f"           targets {ids_out[:48]}{' ...' if len(ids_out) > 48 else ''} "
              f"({len(ids_out)} tokens)")
  print(f"\nlengths over {len(chars_in)} examples:")
  print(f"  inputs  characters: {_lengths(chars_in)}")
  print(f"  targets characters: {_lengths(chars_out)}")
  if vocabulary is not None:
    print(f"  inputs  tokens:     {_lengths(tokens_in)}")
    print(f"  targets tokens:     {_lengths(tokens_out)}")
  return 0


# ----------------------------------------------------------------------------- mixture report


def _parse_sources(items: list[str]) -> dict[str, str]:
  parsed = {}
  for item in items:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"--source {item!r}: write it as NAME=PATH, e.g. aya_dataset=/data/aya")
    parsed[name] = path
  return parsed


def _manifest_of(args: argparse.Namespace) -> str | None:
  """--manifest, else the gin files' TASK_MANIFEST (parsed by the caller), else None."""
  if getattr(args, "manifest", None):
    return args.manifest
  if uses_gin(args):
    from aya_t5x import gin_config

    bound = gin_config.macro_value("TASK_MANIFEST")
    return bound if isinstance(bound, str) else None
  return None


def _gin_vocabulary_path(args: argparse.Namespace) -> str | None:
  if args.vocabulary:
    return args.vocabulary
  if uses_gin(args):
    from aya_t5x import gin_config

    # The gin route counts tokens with the mixture's own vocabulary.
    bound = gin_config.macro_value("VOCABULARY_PATH")
    return bound if isinstance(bound, str) else None
  return None


def _load_vocabulary(path: str | None):
  if not path:
    return None
  from aya_t5x.vocab import vocabulary as vocab_lib

  return vocab_lib.sentencepiece_vocabulary(path)


def _registered_mixture(args: argparse.Namespace, manifest_path: str | None):
  """The plan of a SeqIO mixture that --module (or gin's MIXTURE_OR_TASK_MODULE) registers,
  or None when NAME is not one (a scheme)."""
  from aya_t5x import input_pipeline
  from aya_t5x.data import mixing

  modules = list(args.module or [])
  if uses_gin(args):
    from aya_t5x import gin_config

    bound = gin_config.macro_value("MIXTURE_OR_TASK_MODULE")
    modules += [bound] if isinstance(bound, str) else list(bound or [])
  if not modules:
    return None
  input_pipeline.import_task_modules(modules)
  import seqio

  if args.name not in seqio.MixtureRegistry.names():
    return None
  return mixing.registered_plan(args.name)


def _plan(args: argparse.Namespace):
  import gin
  from aya_t5x.data import manifest, schemes

  if uses_gin(args):
    parse_gin(args)
  manifest_path = _manifest_of(args)
  if manifest_path:
    read_back = manifest.read(manifest_path)
    manifest.use_languages(read_back)
    if read_back.mixture(args.name):
      planned = manifest.plan_tasks(read_back, list(read_back.mixture(args.name)["tasks"]))
      return manifest.plan_mixture(read_back, args.name, planned,
                                   vocabulary=_load_vocabulary(_gin_vocabulary_path(args)))
  registered = _registered_mixture(args, manifest_path)
  if registered is not None:
    return registered
  if uses_gin(args):
    if manifest_path:  # aya_mixture.extra may name the manifest's tasks
      from aya_t5x import input_pipeline

      input_pipeline.register_manifest(manifest_path)
    try:
      # The mixture files bind it (`import aya_t5x.mixtures` in gin/mixtures/aya_sources.gin).
      name = gin.get_configurable("aya_t5x.mixtures.aya_mixture")()
    except KeyError as e:  # an unknown scheme or source named in the gin files
      raise _as_value_error(e) from None
    plan = schemes.registered_plan(name)
    if args.name not in (name, name.removeprefix("aya_")):
      raise ValueError(f"the gin files configure mixture {name}, not {args.name}")
    return plan
  try:
    schemes.get_scheme(args.name)
  except KeyError as e:
    where = (f"it is no mixture of {manifest_path} either" if manifest_path else
             "a mixture of a task manifest needs --manifest FILE (or --gin.TASK_MANIFEST)")
    raise ValueError(f"{_as_value_error(e)} ({where}; any SeqIO mixture a module registers: "
                     "--module)") from None
  if args.source:
    return schemes.plan_aya_mixture(
        args.name, _parse_sources(args.source), tolerant=args.tolerant, strategy=args.strategy,
        allow_missing_sources=args.allow_missing_sources, cache_dir=args.cache_dir)
  return schemes.published_plan(args.name)


def _mixture_report(args: argparse.Namespace) -> int:
  from aya_t5x.data import report

  plan = _plan(args)
  vocabulary = _load_vocabulary(_gin_vocabulary_path(args))
  result = report.mixture_report(plan, steps=args.steps, batch=args.batch,
                                 examples_per_sequence=args.examples_per_sequence,
                                 warn_epochs=args.warn_epochs, vocabulary=vocabulary)
  paths = report.write_report(result, args.out)
  print(report.format_markdown(result))
  print("wrote " + ", ".join(str(p) for p in paths.values()))
  return 0


# ----------------------------------------------------------------------------- mixture add


def _parse_task_rates(items: list[str], rate_by: str | None) -> dict[str, float]:
  rates: dict[str, float] = {}
  for item in items:
    name, sep, value = item.partition("=")
    if not name or (sep and not value):
      raise ValueError(f"--task {item!r}: write it as TASK=RATE, e.g. tswana_qa=2")
    if not sep:
      if not rate_by:
        raise ValueError(f"--task {item!r}: give its rate (TASK=RATE), or --rate_by "
                         "examples|tokens|temperature:T to rate the tasks by their size")
      value = "1"
    try:
      rates[name] = float(value)
    except ValueError:
      raise ValueError(f"--task {item!r}: the rate {value!r} is not a number") from None
    if rates[name] <= 0:
      raise ValueError(f"--task {item!r}: the rate must be positive")
  return rates


def _mixture_add(args: argparse.Namespace) -> int:
  from aya_t5x.data import manifest

  rates = _parse_task_rates(args.task, args.rate_by)
  _, plan = manifest.add_mixture(args.manifest, args.name, rates, rate_by=args.rate_by,
                                 replace=args.replace,
                                 vocabulary=_load_vocabulary(args.vocabulary))
  print(f"added mixture {args.name} to {args.manifest} (rate_by "
        f"{args.rate_by or 'rates as given'}):")
  for task, rate in sorted(plan.task_rates.items(), key=lambda kv: -kv[1]):
    print(f"  {task:<32} {100 * rate:6.2f}%")
  print(f"Train on it with --gin.TASK_MANIFEST=\"'{args.manifest}'\" "
        f"--gin.MIXTURE_OR_TASK_NAME=\"'{args.name}'\"; see its budget with `aya-t5x mixture "
        f"report {args.name} --manifest {args.manifest} --steps S --batch B`")
  return 0


# ----------------------------------------------------------------------------- languages


def _yes_no(value: str) -> bool:
  lowered = value.strip().lower()
  if lowered in ("yes", "y", "true", "1"):
    return True
  if lowered in ("no", "n", "false", "0"):
    return False
  raise argparse.ArgumentTypeError(f"{value!r}: answer yes or no")


def _languages_add(args: argparse.Namespace) -> int:
  from aya_t5x.data import languages, manifest

  read_back = manifest.read(args.manifest)
  manifest.use_languages(read_back)
  language = languages.new_language(args.code, name=args.name, script=args.script or "",
                                    group=args.group, in_mt5=args.in_mt5,
                                    added_in=str(args.manifest))
  manifest.add_language(args.manifest, language, replace=args.replace)
  print(f"added {_describe(language)} to {args.manifest}")
  print(f"Tasks of {args.manifest} may now use --language {language.code}; runs that load it "
        f"(--gin.TASK_MANIFEST=\"'{args.manifest}'\") know the language on every host.")
  return 0


def _describe(language) -> str:
  where = "mT5's 101" if language.joshi_class is not None else (
      f"added in {language.added_in}" if language.added_in else "added")
  codes = ", ".join(c for c in language.codes if c != language.code)
  return (f"{language.code} ({language.name}): script {language.script}, group "
          f"{language.group}, {'in' if language.in_mt5 else 'not in'} mT5's pre-training, "
          f"{where}" + (f"; also {codes}" if codes else ""))


def _use_manifest_languages(args: argparse.Namespace) -> None:
  from aya_t5x.data import manifest

  manifest.use_languages(manifest.read(args.manifest))


def _languages_list(args: argparse.Namespace) -> int:
  from aya_t5x.data import languages

  _use_manifest_languages(args)
  rows = languages.added_languages() if args.added else languages.known_languages()
  for language in rows:
    joshi = "-" if language.joshi_class is None else str(language.joshi_class)
    mark = "" if language.joshi_class is not None else "  (added)"
    print(f"{language.code:<8} {language.name:<28} {language.script:<5} {language.group}  "
          f"joshi {joshi}{mark}")
  print(f"{len(rows)} language(s)")
  return 0


def _languages_show(args: argparse.Namespace) -> int:
  from aya_t5x.data import languages

  _use_manifest_languages(args)
  try:
    language = languages.get_language(args.code)
  except KeyError as e:
    raise _as_value_error(e) from None
  print(_describe(language))
  return 0


# ----------------------------------------------------------------------------- cache


def _cache_sources(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
  """The sources and vocabulary: --sources_json, --source, then gin's AYA_SOURCES and
  VOCABULARY_PATH (so that the cache and training read the same bindings)."""
  import json

  found: dict[str, Any] = {}
  vocabulary = args.vocabulary
  if uses_gin(args):
    from aya_t5x import gin_config

    parse_gin(args)
    bound = gin_config.macro_value("AYA_SOURCES")
    if isinstance(bound, dict):
      found.update(bound)
    bound = gin_config.macro_value("VOCABULARY_PATH")
    vocabulary = vocabulary or (bound if isinstance(bound, str) else None)
  if args.sources_json:
    try:
      with open(args.sources_json, encoding="utf-8") as f:
        loaded = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{args.sources_json}:{e.lineno}: broken JSON ({e.msg}); the file is "
                       '{"source": "path" or {"train": "path", ...}, ...}') from None
    if not isinstance(loaded, dict):
      raise ValueError(f"{args.sources_json}: a JSON object {{source: path}} is needed")
    found.update(loaded)
  found.update(_parse_sources(args.source))
  return found, vocabulary


def _cache_command(args: argparse.Namespace) -> str:
  """The command line that rebuilds this cache (recorded in its info)."""
  import shlex

  words = ["aya-t5x", "cache"]
  for item in args.source:
    words += ["--source", item]
  for flag in ("sources_json", "vocabulary", "output_dir"):
    if getattr(args, flag):
      words += [f"--{flag}", str(getattr(args, flag))]
  for path in args.gin_file:
    words += ["--gin_file", path]
  words += [f"--gin.{b}" for b in args.gin_bindings]
  for item in args.decontaminate:
    words += ["--decontaminate", item]
  for flag in ("seed", "decontaminate_n", "shard_examples", "min_shards", "max_shards"):
    words += [f"--{flag}", str(getattr(args, flag))]
  words += ["--no_dedup"] * (not args.dedup) + ["--strict"] * args.strict
  return shlex.join(words)


def _cache(args: argparse.Namespace) -> int:
  try:
    from aya_t5x.data import cache_pipeline
  except ImportError as e:
    raise ValueError(
        f"`aya-t5x cache` needs Apache Beam ({e}). Install the 'beam' extra with its pin "
        "set: pip install -c requirements/constraints-beam.txt -e '.[beam]' (or `make "
        "install-beam`); see docs/data.md.") from None
  found, vocabulary = _cache_sources(args)
  if not found:
    raise ValueError("no sources: give --source NAME=PATH (repeat), --sources_json FILE, or "
                     "gin files binding AYA_SOURCES")
  if not vocabulary:
    raise ValueError("no vocabulary: give --vocabulary /path/sentencepiece.model (or bind "
                     "VOCABULARY_PATH in gin)")
  beam_args = list(args.beam_options)
  if args.workers:
    beam_args = [f"--direct_num_workers={args.workers}",
                 "--direct_running_mode=multi_processing", *beam_args]
  config = cache_pipeline.CacheConfig(
      sources=found, output_dir=args.output_dir, vocabulary=vocabulary, seed=args.seed,
      decontaminate=_parse_sources(args.decontaminate), decontaminate_n=args.decontaminate_n,
      dedup=args.dedup, strict=args.strict, shard_examples=args.shard_examples,
      min_shards=args.min_shards, max_shards=args.max_shards, command=_cache_command(args))
  info = cache_pipeline.run(config, beam_args)
  from aya_t5x.data import caches

  print(caches.format_summary(info))
  print(f"wrote {len(info['tasks'])} cached tasks to {args.output_dir}; train on them with "
        f"--gin.CACHE_DIR=\"'{args.output_dir}'\"")
  return 0


# ----------------------------------------------------------------------------- wiring


def add_commands(subparsers: Any) -> None:
  """Adds `tasks {add,list,inspect}` and `mixture report` to an argparse subparsers object."""
  tasks = subparsers.add_parser("tasks", help="add, list and inspect data tasks",
                                description="SeqIO tasks from the Aya sources and your files.")
  actions = tasks.add_subparsers(dest="tasks_command", required=True, metavar="ACTION")

  add = actions.add_parser(
      "add", help="register a task from a JSONL/parquet/arrow file in one step",
      description="Checks every split against the fields you name (each must keep an "
                  "example after the filters) and writes the task into a manifest that "
                  "training loads (TASK_MANIFEST); a failed add leaves the manifest as it "
                  "was. Paths are stored relative to the manifest.")
  add.add_argument("name", help="task name (letters, digits, '_', '.', ':')")
  add.add_argument("--path", help="a data file (the train split), or a folder holding "
                   "train.*, validation.*, test.* (one split each, never merged)")
  add.add_argument("--train", help="train split file")
  add.add_argument("--validation", help="validation split file (train-eval reads it)")
  add.add_argument("--test", help="test split file (`aya-t5x eval --split test`)")
  add.add_argument("--language", help="language of every record: any code or name")
  add.add_argument("--language_key", help="field holding each record's language instead")
  add.add_argument("--inputs_key", default="inputs", help="field of the prompt")
  add.add_argument("--targets_key", default="targets", help="field of the completion")
  add.add_argument("--template_inputs", help="prompt template with {{field}} placeholders")
  add.add_argument("--template_targets", help="completion template with {{field}} placeholders")
  add.add_argument("--dataset", help="dataset name in reports (the task name by default)")
  add.add_argument("--tolerant", action="store_true",
                   help="skip and count malformed records instead of failing")
  add.add_argument("--manifest", default=DEFAULT_MANIFEST, help="task manifest (JSON)")
  add.add_argument("--replace", action="store_true", help="overwrite a task of that name")
  add.add_argument("--kind", choices=("examples", "preference"), default="examples",
                   help="examples (inputs/targets) or preference pairs "
                        "(prompt/chosen/rejected/language; docs/preference.md)")
  add.set_defaults(handler=_tasks_add)

  listing = actions.add_parser("list", help="list sources and registered tasks")
  listing.add_argument("--manifest", default=DEFAULT_MANIFEST)
  listing.add_argument("--registered", action="store_true",
                       help="also list the SeqIO tasks registered in this process")
  listing.set_defaults(handler=_tasks_list)

  inspect = actions.add_parser(
      "inspect", help="show raw, templated and tokenized examples and their lengths",
      description="NAME is a task of the manifest, or a source (aya_dataset, xp3x, ...) "
                  "with --path.")
  inspect.add_argument("name")
  inspect.add_argument("--path", help="data (required for a source)")
  inspect.add_argument("--manifest", default=DEFAULT_MANIFEST)
  inspect.add_argument("--vocabulary", help="SentencePiece model, to show token ids")
  inspect.add_argument("--split", default="train", choices=("train", "validation", "test"))
  inspect.add_argument("--language", help="only this language (mT5 code)")
  inspect.add_argument("-n", "--num_examples", type=int, default=3)
  inspect.add_argument("--sample", type=int, default=1000,
                       help="examples measured for the length statistics")
  inspect.add_argument("--tolerant", action="store_true")
  inspect.set_defaults(handler=_tasks_inspect)

  mixture = subparsers.add_parser("mixture", help="mixture tools")
  mixture_actions = mixture.add_subparsers(dest="mixture_command", required=True,
                                           metavar="ACTION")
  rep = mixture_actions.add_parser(
      "report", help="shares, HR/MR/LR split and epochs of a mixture at a step budget",
      description="NAME is a scheme (human_heavy, translation_heavy, template_heavy), a "
                  "mixture of a task manifest (--manifest) or any SeqIO mixture a module "
                  "registers (--module). For a scheme, with --source NAME=PATH (or the gin "
                  "files of gin/mixtures/) the sources are scanned; without, the report uses "
                  "the published sizes (per source).")
  rep.add_argument("name")
  rep.add_argument("--steps", type=int, required=True)
  rep.add_argument("--batch", type=int, required=True, help="sequences per step")
  rep.add_argument("--examples_per_sequence", type=float, default=1.0,
                   help="examples packed in one sequence (the recipe's packing: about 3.3)")
  rep.add_argument("--warn_epochs", type=float, default=10.0,
                   help="warn when a source or task repeats more often than this")
  rep.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                   help="data of a source; repeat for each")
  rep.add_argument("--allow_missing_sources", action="store_true",
                   help="share the weight of sources without --source among the others")
  rep.add_argument("--strategy", default="proportional",
                   choices=("proportional", "temperature", "unimax"))
  rep.add_argument("--vocabulary", help="SentencePiece model, to count tokens "
                                        "(characters without it)")
  rep.add_argument("--tolerant", action="store_true")
  rep.add_argument("--cache_dir", help="an `aya-t5x cache` output of these sources: sizes, "
                   "tokens and the data section come from it, without a scan")
  rep.add_argument("--manifest", help="task manifest whose mixture NAME is (also read from "
                   "--gin.TASK_MANIFEST)")
  rep.add_argument("--module", action="append", help="module that registers the SeqIO "
                   "mixture NAME (any registered mixture; also gin's MIXTURE_OR_TASK_MODULE)")
  rep.add_argument("--out", default="mixture_report", help="folder for .md, .json and .png")
  _add_gin_flags(rep)
  rep.set_defaults(handler=_mixture_report)

  madd = mixture_actions.add_parser(
      "add", help="record a mixture of manifest tasks, usable by name in gin",
      description="Writes a mixture into the manifest; every run that loads it "
                  "(TASK_MANIFEST) registers it, so MIXTURE_OR_TASK_NAME may name it.")
  madd.add_argument("name", help="mixture name")
  madd.add_argument("--task", action="append", required=True, metavar="TASK=RATE",
                    help="a manifest task (or one language of it, TASK.xx) and its rate; "
                         "with --rate_by the rate multiplies the task's size (default 1)")
  madd.add_argument("--rate_by", help="examples, tokens or temperature:T (rates from the "
                    "train sizes); without it the rates are used as given")
  madd.add_argument("--vocabulary", help="SentencePiece model (for --rate_by tokens)")
  madd.add_argument("--manifest", default=DEFAULT_MANIFEST, help="task manifest (JSON)")
  madd.add_argument("--replace", action="store_true", help="overwrite a mixture of that name")
  madd.set_defaults(handler=_mixture_add)

  langs = subparsers.add_parser(
      "languages", help="list, show and add languages (yours beside mT5's 101)",
      description="mT5's 101 languages and the ones added to a task manifest.")
  lang_actions = langs.add_subparsers(dest="languages_command", required=True,
                                      metavar="ACTION")
  ladd = lang_actions.add_parser(
      "add", help="add a language to the manifest (tasks of it may then use it)",
      description="CODE is ISO 639-1/639-3 or a BCP-47 tag with a script (ff-Adlm); it is "
                  "normalised (tsn -> tn).")
  ladd.add_argument("code")
  ladd.add_argument("--name", required=True, help="English name, e.g. Tswana")
  ladd.add_argument("--script", help="ISO 15924 script, e.g. Latn, Adlm, Tfng (from the tag "
                    "if it has one)")
  ladd.add_argument("--group", required=True, type=str.upper, choices=("HR", "MR", "LR"),
                    help="resource group for reports (Joshi class 5-4 HR, 3 MR, 2-0 LR)")
  ladd.add_argument("--in_mt5", type=_yes_no, default=False, metavar="{yes,no}",
                    help="whether mT5 was pre-trained on it (default no)")
  ladd.add_argument("--manifest", default=DEFAULT_MANIFEST, help="task manifest (JSON)")
  ladd.add_argument("--replace", action="store_true", help="change a language added before")
  ladd.set_defaults(handler=_languages_add)
  llist = lang_actions.add_parser("list", help="mT5's 101 and the added languages")
  llist.add_argument("--manifest", default=DEFAULT_MANIFEST)
  llist.add_argument("--added", action="store_true", help="only the added languages")
  llist.set_defaults(handler=_languages_list)
  lshow = lang_actions.add_parser("show", help="one language, by any code or name")
  lshow.add_argument("code")
  lshow.add_argument("--manifest", default=DEFAULT_MANIFEST)
  lshow.set_defaults(handler=_languages_show)

  cache = subparsers.add_parser(
      "cache", help="preprocess the sources into SeqIO caches with Apache Beam",
      description="One Apache Beam pipeline from the training sources to SeqIO caches "
                  "(use_cached=True): filters, caps, decontamination, exact dedup, "
                  "tokenization, per-source statistics, dead letters. Beam's own flags "
                  "(--runner=DataflowRunner/FlinkRunner/SparkRunner and theirs) go after "
                  "`--`. Needs the 'beam' extra (docs/data.md).")
  cache.add_argument("--source", action="append", default=[], metavar="NAME=PATH",
                     help="data of a source (aya_dataset, xp3x, ...); repeat for each")
  cache.add_argument("--sources_json", help="JSON file {source: path or {split: path}} "
                     "(the value of AYA_SOURCES; the demo writes sources.json)")
  cache.add_argument("--vocabulary", help="SentencePiece model to tokenize with")
  cache.add_argument("--output_dir", required=True, help="cache folder (local or gs://)")
  cache.add_argument("--seed", type=int, default=0, help="seed of the shard layout")
  cache.add_argument("--decontaminate", action="append", default=[], metavar="NAME=PATH",
                     help="an evaluation file whose n-grams no kept example may share")
  cache.add_argument("--decontaminate_n", type=int, default=13, help="n of the n-grams")
  cache.add_argument("--no_dedup", dest="dedup", action="store_false",
                     help="keep exact duplicates of (inputs, targets)")
  cache.add_argument("--strict", action="store_true",
                     help="fail (after writing the dead letters) on any malformed record")
  cache.add_argument("--shard_examples", type=int, default=50_000,
                     help="examples per shard of a task split")
  cache.add_argument("--min_shards", type=int, default=1,
                     help="at least this many shards per task split (set it to the number "
                          "of training hosts so that each reads only its own files)")
  cache.add_argument("--max_shards", type=int, default=1024)
  cache.add_argument("--workers", type=int, default=0,
                     help="DirectRunner worker processes on this machine (0: Beam's default)")
  cache.add_argument("beam_options", nargs="*", metavar="-- BEAM_FLAGS",
                     help="Apache Beam pipeline options, after --")
  _add_gin_flags(cache)
  cache.set_defaults(handler=_cache)
