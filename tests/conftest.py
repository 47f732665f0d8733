"""Shared fixtures: CPU only, 8 simulated devices, multilingual text and a small vocabulary.

The tiny models, vocabularies and translation models themselves are in `aya_t5x.testing`.
"""

import os
import tempfile

# Must be set before jax initialises its backends (pytest imports conftest first).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Many tests (and the training subprocesses they start) compile the same tiny programs;
# a persistent compilation cache shared by them saves minutes on 2 cores. It is new for
# each pytest run (the xdist workers and subprocesses inherit the variable), so that no
# run depends on what an earlier one left behind.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="aya_t5x_tests_jax_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# What gin files configure is registered at the top of the import graph, as the command
# line does (`aya_t5x.cli`): tests parse gin directly too.
import aya_t5x.configurables  # noqa: E402, F401


@pytest.fixture(scope="session")
def sentences_file(tmp_path_factory):
  from aya_t5x.testing import vocabularies

  return vocabularies.write_sentences(tmp_path_factory.mktemp("text") / "sentences.txt")


@pytest.fixture(scope="session")
def small_vocabulary(sentences_file, tmp_path_factory):
  """A 512-piece SentencePiece vocabulary trained on the sentences (T5 ids)."""
  from aya_t5x.testing import vocabularies
  from aya_t5x.vocab import vocabulary

  path = vocabularies.train_vocabulary(sentences_file, tmp_path_factory.mktemp("spm"),
                                       vocab_size=512)
  return vocabulary.sentencepiece_vocabulary(str(path))


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def pytest_configure(config):
  from tests import ci_skips

  if not config.pluginmanager.has_plugin("tests.ci_skips"):
    config.pluginmanager.register(ci_skips, "tests.ci_skips")


def pytest_unconfigure(config):
  if _OWN_CACHE:
    import shutil

    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(autouse=True)
def _forget_added_languages():
  """Languages a test adds (`languages add`, a manifest) are process state: drop them."""
  yield
  from aya_t5x.data import languages

  languages.clear_user_languages()
