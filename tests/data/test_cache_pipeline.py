"""`aya-t5x cache` (Apache Beam, DirectRunner): the cache holds exactly what the on-the-fly
tasks give, minus the duplicates it reports; it is the same on 1 and 2 workers and byte
for byte between runs; SeqIO reads it; training resumes exactly on it; bad records go to
the dead letters.

Skipped without apache-beam (the base install); `make test-beam` runs them.
"""

import collections
import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

beam = pytest.importorskip("apache_beam")

import aya_t5x.tasks  # noqa: E402, F401  (the recipe's sources, as the command line registers them)
from aya_t5x.data import (  # noqa: E402
  cache_pipeline,
  caches,
  filters,
  registration,
  sources,
)
from aya_t5x.testing.vocabularies import multilingual_sentences  # noqa: E402

SOURCE = "cache_fixture"
CAP = 3
TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
EVAL_TEXT = "the children read books near the river and the cat sees a small house today"


def _fixture_filters():
  return (filters.KeepMT5Languages(), filters.DropUnk(),
          filters.Cap(cap=CAP, by=("language", "dataset"), seed=0, uncapped=("whole",)))


SPEC = sources.SourceSpec(
    name=SOURCE, title="cache test source",
    schema=(sources.Field(name="inputs"), sources.Field(name="targets"),
            sources.Field(name="language"), sources.Field(name="dataset")),
    dataset_field="dataset", filters=_fixture_filters)


def _records(sentences, language, dataset, count, start):
  return [{"inputs": sentences[(start + i) % len(sentences)],
           "targets": sentences[(start + 7 * i + 3) % len(sentences)],
           "language": language, "dataset": dataset} for i in range(count)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Two files of one source: capped and uncapped datasets, duplicates, <unk>, a language
  outside mT5, malformed lines, and a record planted from the evaluation file."""
  root = tmp_path_factory.mktemp("cache_corpus")
  sentences = multilingual_sentences(120)
  first = (_records(sentences, "sw", "capped", 9, 0) + _records(sentences, "fr", "capped", 2, 20)
           + _records(sentences, "sw", "whole", 6, 40))
  first.append(dict(first[-1]))  # an exact duplicate of (inputs, targets)
  first.append({**first[0], "targets": "with <unk> inside"})
  second = _records(sentences, "fr", "whole", 5, 60) + _records(sentences, "sw", "capped", 4, 80)
  second.append({**second[0], "language": "tlh"})  # an ISO code outside mT5
  second.append({"inputs": f"please answer: {EVAL_TEXT}", "targets": "yes indeed it is",
                 "language": "fr", "dataset": "whole"})
  (root / "train").mkdir()
  lines_one = [json.dumps(r, ensure_ascii=False) for r in first]
  lines_one.insert(4, '{"inputs": "broken json"')
  lines_two = [json.dumps(r, ensure_ascii=False) for r in second]
  lines_two.insert(2, json.dumps({"inputs": "no targets", "language": "sw", "dataset": "whole"}))
  (root / "train" / "part1.jsonl").write_text("\n".join(lines_one) + "\n", encoding="utf-8")
  (root / "train" / "part2.jsonl").write_text("\n".join(lines_two) + "\n", encoding="utf-8")
  validation = _records(sentences, "sw", "whole", 3, 100)
  (root / "validation.jsonl").write_text(
      "\n".join(json.dumps(r, ensure_ascii=False) for r in validation) + "\n", encoding="utf-8")
  (root / "eval.jsonl").write_text(json.dumps({"question": EVAL_TEXT}) + "\n", encoding="utf-8")
  return root


@pytest.fixture(scope="module")
def registered():
  sources.register_source(SPEC, overwrite=True)
  return SPEC


@pytest.fixture(scope="module")
def demo_sources(tmp_path_factory):
  """The demo corpus's six sources, the first rows of each file (in their own formats)."""
  import pyarrow.parquet as pq

  from aya_t5x.demo import corpus as demo_corpus

  built = demo_corpus.build_corpus(tmp_path_factory.mktemp("demo_corpus"))
  root = tmp_path_factory.mktemp("demo_sources")
  trimmed = {}
  for source, splits in built.source_paths().items():
    trimmed[source] = {}
    for split, path in splits.items():
      rows = 60 if split == "train" else 8
      out = root / source / Path(path).name
      out.parent.mkdir(parents=True, exist_ok=True)
      if path.endswith(".parquet"):
        pq.write_table(pq.read_table(path).slice(0, rows), out)
      else:
        out.write_text("".join(Path(path).read_text(encoding="utf-8").splitlines(True)[:rows]),
                       encoding="utf-8")
      trimmed[source][split] = str(out)
  return trimmed, built.vocabulary_path


def _config(corpus, demo_sources, output_dir, **kwargs):
  paths, vocabulary = demo_sources
  return cache_pipeline.CacheConfig(
      sources={SOURCE: {"train": str(corpus / "train"),
                        "validation": str(corpus / "validation.jsonl")}, **paths},
      output_dir=str(output_dir), vocabulary=str(vocabulary),
      decontaminate={"eval_set": str(corpus / "eval.jsonl")}, decontaminate_n=8,
      shard_examples=4, min_shards=2, command="aya-t5x cache (test)", **kwargs)


@pytest.fixture(scope="module")
def vocabulary(demo_sources):
  from aya_t5x.vocab import vocabulary as vocab_lib

  return vocab_lib.sentencepiece_vocabulary(str(demo_sources[1]))


@pytest.fixture(scope="module")
def built(corpus, registered, demo_sources, tmp_path_factory):
  """The cache built on 2 worker processes."""
  output = tmp_path_factory.mktemp("cache_two_workers")
  info = cache_pipeline.run(_config(corpus, demo_sources, output), TWO_WORKERS)
  return output, info


def _files(root: Path) -> dict[str, bytes]:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
          if p.is_file()}


def _token_multiset(task, split, use_cached):
  dataset = task.get_dataset(sequence_length=None, split=split, use_cached=use_cached,
                             shuffle=False, try_in_mem_cache=False)
  # Texts and token ids: texts outside the demo vocabulary share ids (unknown pieces).
  return collections.Counter((ex["inputs_pretokenized"], ex["targets_pretokenized"],
                              tuple(ex["inputs"].tolist()), tuple(ex["targets"].tolist()))
                             for ex in dataset.as_numpy_iterator())


def test_cache_holds_the_on_the_fly_examples_minus_reported_duplicates(
    built, corpus, demo_sources, vocabulary):
  import seqio

  from aya_t5x import mixtures

  output, info = built
  eval_filter = filters.Decontaminate.from_files({"eval_set": str(corpus / "eval.jsonl")}, n=8)
  planned = registration.plan_source_tasks(
      SOURCE, {"train": str(corpus / "train"), "validation": str(corpus / "validation.jsonl")},
      tolerant=True, filters=(*_fixture_filters(), eval_filter))
  plan = mixtures.plan_aya_mixture("translation_heavy", demo_sources[0])
  on_the_fly = [planned, *plan.source_tasks.values()]
  for source_tasks in on_the_fly:
    registration.register_planned(source_tasks, vocabulary)
  caches.use_cache_dir(str(output))
  assert sorted(info["tasks"]) == sorted(t.name for p in on_the_fly for t in p.tasks)
  duplicates = 0
  for task_info in (t for p in on_the_fly for t in p.tasks):
    task = seqio.get_mixture_or_task(task_info.name)
    for split in task_info.sizes:
      expected = _token_multiset(task, split, use_cached=False)
      cached = _token_multiset(task, split, use_cached=True)
      # Every distinct example is cached once; only the extra copies are gone.
      assert set(cached) == set(expected), (task_info.name, split)
      assert max(cached.values()) == 1
      duplicates += sum(expected.values()) - sum(cached.values())
  stats = info["sources"][SOURCE]["stats"]
  assert duplicates == 1
  assert stats["removed"]["dedup: duplicate (inputs, targets)"] == duplicates
  # The cap holds exactly (3 of 13 Swahili "capped" records), the uncapped dataset stays
  # whole, and the scan's report and the cache's agree on every other removal.
  counts = {(s, lang, d): n for s, lang, d, n, _ in info["sources"][SOURCE]["counts"]}
  assert counts[("train", "sw", "capped")] == CAP
  assert counts[("train", "fr", "capped")] == 2
  assert counts[("train", "sw", "whole")] == 6  # 7 with the duplicate
  assert {k: v for k, v in stats["removed"].items() if not k.startswith("dedup")} == \
      dict(planned.report.removed)
  assert stats["removed"]["decontaminate: 8-gram overlap with eval_set"] == 1
  assert stats["details"]["cap"]["cap"] == CAP
  assert stats["read"] == planned.report.read


def test_mixture_and_report_from_the_cache_without_a_scan(built, demo_sources):
  from aya_t5x import mixtures
  from aya_t5x.data import report

  output, _ = built
  scanned = mixtures.plan_aya_mixture("translation_heavy", demo_sources[0])
  cached = mixtures.plan_aya_mixture("translation_heavy", demo_sources[0],
                                     cache_dir=str(output))
  assert cached.task_rates == scanned.task_rates
  for source, planned in cached.source_tasks.items():
    assert planned.index.cache_dir == str(output)
    assert [(t.name, dict(t.sizes), dict(t.chars)) for t in planned.tasks] == \
        [(t.name, dict(t.sizes), dict(t.chars)) for t in scanned.source_tasks[source].tasks]
    assert planned.report.read == scanned.source_tasks[source].report.read
  result = report.mixture_report(cached, steps=10, batch=8, vocabulary=object())
  # Tokens per example from every cached example (stats.train.json), EOS included.
  task = result["tasks"][0]
  stats = caches.split_stats(str(output), task["task"], "train")
  assert task["tokens_per_example"] == round(
      (stats["inputs_tokens"] + stats["targets_tokens"]) / stats["examples"] + 2, 2)
  other = dict(demo_sources[0])
  other["xp3x"] = {"train": other["xp3x"]["train"]}
  with pytest.raises(caches.CacheError, match="was built from"):
    mixtures.plan_aya_mixture("translation_heavy", other, cache_dir=str(output))


def test_same_seed_same_bytes_on_one_and_two_workers(built, corpus, demo_sources, tmp_path):
  output, _ = built
  cache_pipeline.run(_config(corpus, demo_sources, tmp_path))  # one in-process worker
  first, second = _files(output), _files(tmp_path)
  assert first.keys() == second.keys()
  assert first == second
  # SeqIO's layout: shards named as its reader expects, with info and stats.
  task = f"{SOURCE}.sw"
  assert {"COMPLETED", "info.train.json", "stats.train.json",
          "train.tfrecord-00000-of-00003"} <= {p.split("/")[-1] for p in first
                                               if p.startswith(task + "/")}


def test_malformed_records_are_dead_letters_with_file_and_line(built, corpus):
  output, info = built
  letters = [json.loads(line) for line in
             (output / cache_pipeline.DEAD_LETTER_DIR / f"{SOURCE}.jsonl").read_text().splitlines()]
  where = {(Path(d["file"]).name, d["line"], d["kind"]) for d in letters}
  assert where == {("part1.jsonl", 5, "broken JSON"),
                   ("part2.jsonl", 3, "targets: missing")}
  by_file = info["sources"][SOURCE]["stats"]["malformed_by_file"]
  assert by_file == {str(corpus / "train" / "part1.jsonl"): {"broken JSON": 1},
                     str(corpus / "train" / "part2.jsonl"): {"targets: missing": 1}}


def test_strict_fails_after_writing_the_dead_letters(corpus, registered, demo_sources,
                                                     tmp_path):
  config = dataclasses.replace(_config(corpus, demo_sources, tmp_path, strict=True),
                               sources={SOURCE: str(corpus / "train")})
  with pytest.raises(caches.CacheError, match="--strict: malformed records in cache_fixture"):
    cache_pipeline.run(config)
  assert (tmp_path / cache_pipeline.DEAD_LETTER_DIR / f"{SOURCE}.jsonl").is_file()
  assert not (tmp_path / caches.INFO_FILE).exists()
  with pytest.raises(caches.CacheError, match="aya-t5x cache"):
    caches.read_info(str(tmp_path))


def test_stale_cache_names_the_rebuild_command(built, corpus, tmp_path):
  output, info = built
  paths = {"train": str(corpus / "train"), "validation": str(corpus / "validation.jsonl")}
  caches.check_source(info, str(output), SOURCE, paths)  # fresh
  extra = corpus / "train" / "part3.jsonl"
  extra.write_text("", encoding="utf-8")
  try:
    with pytest.raises(caches.CacheError, match=r"stale.*rebuild it with: aya-t5x cache \(test\)"):
      caches.check_source(info, str(output), SOURCE, paths)
  finally:
    os.remove(extra)


def test_training_reads_the_cache_and_resumes_exactly(built, vocabulary):
  import numpy as np

  from aya_t5x import input_pipeline

  output, info = built
  planned = registration.plan_from_index(caches.source_index(info, str(output), SOURCE))
  registration.register_planned(planned, vocabulary)
  assert planned.mixture == SOURCE
  config = input_pipeline.DatasetConfig(
      mixture_or_task_name=SOURCE, task_feature_lengths={"inputs": 32, "targets": 32},
      batch_size=4, cache_dir=str(output), seed=3)
  whole = [next(iter_) for iter_ in [input_pipeline.BatchIterator(config)] for _ in range(6)]
  resumed = input_pipeline.BatchIterator(config, position=3)
  for expected in whole[3:]:
    got = next(resumed)
    assert got.keys() == expected.keys()
    for name in expected:
      np.testing.assert_array_equal(got[name], expected[name])
  # Tasks registered from a cache cannot be read on the fly, and say so before any read.
  with pytest.raises(input_pipeline.DataConfigError, match="CACHE_DIR="):
    input_pipeline.check_dataset_config(
        input_pipeline.DatasetConfig(mixture_or_task_name=SOURCE, batch_size=4,
                                     task_feature_lengths={"inputs": 32, "targets": 32}))


# Two tiny training runs: about 80 s of CPU, 140 s on the shared 2-core machine. It runs
# in `make test-beam` (so in CI); `-m "not slow"` leaves it out when iterating.
@pytest.mark.slow
def test_a_run_on_cached_data_stopped_and_resumed_equals_an_uninterrupted_one(
    built, vocabulary, tmp_path):
  import jax
  import numpy as np

  from aya_t5x import cli, command_flags, configurables, gin_config, testing

  output, info = built
  registration.register_planned(
      registration.plan_from_index(caches.source_index(info, str(output), SOURCE)), vocabulary)
  tiny = testing.TINY

  def train(model_dir, steps):
    parsed, bindings = cli.build_parser().parse_known_args([
        "train", "--gin_file", "models/mt5_tiny.gin", "--gin_file", "runs/finetune.gin",
        f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}",
        f"--gin.MIXTURE_OR_TASK_NAME='{SOURCE}'", f"--gin.CACHE_DIR='{output}'",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 16}", "--gin.BATCH_SIZE=8",
        "--gin.MT5Config.vocab_size=1024", f"--gin.MT5Config.d_model={tiny.d_model}",
        f"--gin.MT5Config.d_kv={tiny.d_kv}", f"--gin.MT5Config.d_ff={tiny.d_ff}",
        "--gin.CheckpointConfig.every_steps=2", "--gin.CheckpointConfig.keep=None",
        "--gin.train.log_every=2"])
    gin_config.parse_gin(parsed.gin_file, command_flags.split_gin_bindings(bindings))
    return configurables.configured_train(show_progress=False)

  reference = train(tmp_path / "reference", 4)  # checkpoints at steps 2 and 4
  # A run that stopped after step 2's checkpoint: the same folder without step 4.
  shutil.copytree(tmp_path / "reference" / "checkpoints" / "2",
                  tmp_path / "resumed" / "checkpoints" / "2")
  resumed = train(tmp_path / "resumed", 4)  # restores step 2 and the data position
  assert resumed.step == reference.step == 4
  for x, y in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(reference.state.params),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
