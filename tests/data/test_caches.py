"""Reading and checking `aya-t5x cache` outputs without Apache Beam (the training side)."""

import pytest

from aya_t5x import input_pipeline
from aya_t5x.data import caches, registration, sources


def test_missing_cache_names_the_build_command(tmp_path):
  with pytest.raises(caches.CacheError, match=r"no finished cache .*aya-t5x cache --source"):
    caches.read_info(str(tmp_path))


def test_fingerprint_changes_with_the_files(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  (data / "a.jsonl").write_text('{"inputs": "a", "targets": "b"}\n')
  before = caches.fingerprint(str(data))
  assert caches.fingerprint(str(data)) == before
  (data / "b.jsonl").write_text("")
  assert caches.fingerprint(str(data)) != before
  info = {"command": "aya-t5x cache --source s=DIR", "sources": {"s": {
      "paths": caches.source_paths(str(data)), "fingerprint": before}}}
  with pytest.raises(caches.CacheError, match=r"stale.*rebuild it with: aya-t5x cache --source"):
    caches.check_source(info, "CACHE", "s", str(data))
  with pytest.raises(caches.CacheError, match="has no source 'other'"):
    caches.check_source(info, "CACHE", "other", str(data))


def test_use_cached_without_a_cache_is_an_error(small_vocabulary, tmp_path):
  path = tmp_path / "t.jsonl"
  path.write_text('{"inputs": "hello there", "targets": "general kenobi"}\n' * 3)
  registration.register_jsonl_task("uncached_task", str(path), vocabulary=small_vocabulary,
                                   language="en")
  config = input_pipeline.DatasetConfig(
      mixture_or_task_name="uncached_task", task_feature_lengths={"inputs": 8, "targets": 8},
      batch_size=2, cache_dir=str(tmp_path / "caches"))
  with pytest.raises(input_pipeline.DataConfigError, match="has no SeqIO cache.*aya-t5x cache"):
    input_pipeline.check_dataset_config(config)
  assert sources.get_source("uncached_task").name == "uncached_task"
