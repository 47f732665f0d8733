"""Mixing strategies and the three Aya schemes: exact weights, composition, gin selection."""

import math

import pytest
import seqio

from aya_t5x import mixtures
from aya_t5x.data import mixing
from tests.data import fixtures

# RECIPE.md §4, column order: Aya Dataset, Aya templated, xP3x, Data Provenance,
# Aya translated, ShareGPT-Command.
RECIPE = {"human_heavy": (25, 4, 20, 6, 30, 15),
          "translation_heavy": (10, 1.5, 15, 3.5, 47.5, 22.5),
          "template_heavy": (20, 10, 30, 10, 20, 10)}
ORDER = ("aya_dataset", "aya_templated", "xp3x", "data_provenance", "aya_translated",
         "sharegpt_command")


def test_scheme_weights_are_the_recipes():
  assert mixtures.scheme_names() == tuple(sorted(RECIPE))
  for name, percents in RECIPE.items():
    assert mixtures.get_scheme(name).weights == dict(zip(ORDER, percents, strict=True))
  assert mixtures.get_scheme("aya_translation_heavy") is mixtures.TRANSLATION_HEAVY
  with pytest.raises(KeyError, match="Did you mean human_heavy"):
    mixtures.get_scheme("human_heavvy")
  with pytest.raises(ValueError, match="add up to 99"):
    mixtures.WeightingScheme(name="bad", title="bad", weights={"a": 99})


def test_proportional_with_boosts_and_uniform_fallback():
  assert mixing.proportional({"a": 30, "b": 10}) == {"a": 0.75, "b": 0.25}
  assert mixing.proportional({"a": 30, "b": 10}, boosts={"b": 3}) == {"a": 0.5, "b": 0.5}
  assert mixing.proportional({"a": None, "b": None}) == {"a": 0.5, "b": 0.5}
  with pytest.raises(ValueError, match="boost for unknown task 'c'"):
    mixing.proportional({"a": 1}, boosts={"c": 2})


def test_temperature_sampling():
  sizes = {"big": 900, "small": 100}
  assert mixing.temperature(sizes, temperature=1.0) == pytest.approx({"big": 0.9, "small": 0.1})
  t3 = mixing.temperature(sizes, temperature=3.0)
  expected_small = 0.1 ** (1 / 3) / (0.1 ** (1 / 3) + 0.9 ** (1 / 3))
  assert t3["small"] == pytest.approx(expected_small)
  assert mixing.temperature(sizes, temperature=1e9)["small"] == pytest.approx(0.5)


def test_unimax_spreads_budget_and_caps_epochs():
  sizes = {"tiny": 10, "mid": 100, "huge": 10_000}
  # Budget 300 at one epoch: tiny takes its 10, the 290 left split evenly (mid is capped
  # at 100, huge takes the remaining 190).
  rates = mixing.unimax(sizes, budget=300, max_epochs=1)
  assert {k: v * 300 for k, v in rates.items()} == pytest.approx(
      {"tiny": 10, "mid": 100, "huge": 190})
  # A budget every task can absorb evenly is uniform.
  assert mixing.unimax(sizes, budget=30, max_epochs=4) == pytest.approx(
      {"tiny": 1 / 3, "mid": 1 / 3, "huge": 1 / 3})
  epochs = mixing.epochs(rates, sizes, 300)
  assert max(epochs.values()) <= 1.0 + 1e-9
  with pytest.raises(KeyError, match="Strategies: proportional, temperature, unimax"):
    mixing.get_strategy("uni-max")


def test_compose_keeps_source_weights():
  rates = mixing.compose({"s1": 25, "s2": 75}, {"s1": {"a": 0.5, "b": 0.5}, "s2": {"c": 1.0}})
  assert rates == {"a": 0.125, "b": 0.125, "c": 0.75}


def test_human_heavy_repeats_the_human_set_30_times():
  # RECIPE.md §4: at 25% the human set is seen more than 30 times in 30,000 steps of
  # about 850 packed examples.
  plan = mixtures.published_plan("human_heavy")
  drawn = 0.25 * 30_000 * 850
  assert drawn / plan.size_of("aya_dataset") > 30


@pytest.fixture(scope="module")
def six_sources(tmp_path_factory):
  return fixtures.write_all_sources(tmp_path_factory.mktemp("sources"))


def test_mixture_over_six_sources(six_sources, small_vocabulary):
  plan = mixtures.plan_aya_mixture("translation_heavy", six_sources)
  name = mixtures.register_plan(plan, small_vocabulary)
  assert name == "aya_translation_heavy"
  mixture = seqio.get_mixture_or_task(name)
  per_source = {}
  for task in mixture.tasks:
    source = task.name.split(".")[0]
    per_source[source] = per_source.get(source, 0) + mixture.get_rate(task)
  expected = dict(zip(ORDER, RECIPE["translation_heavy"], strict=True))
  assert per_source == pytest.approx({s: w / 100 for s, w in expected.items()})
  # The Dolly boost (2x by default) inside the translated collection.
  dolly = mixture.get_rate(seqio.get_mixture_or_task("aya_translated.dolly.sw"))
  rest = mixture.get_rate(seqio.get_mixture_or_task("aya_translated.sw"))
  assert dolly / rest == pytest.approx(2.0 * 15 / (25 + 4))  # translated caps are 3,000 here
  batch = list(mixture.get_dataset(sequence_length={"inputs": 64, "targets": 64},
                                   split="train", seed=0).take(16).as_numpy_iterator())
  assert len(batch) == 16


def test_missing_sources_and_extra_tasks(six_sources):
  partial = {k: six_sources[k] for k in ("aya_dataset", "xp3x")}
  with pytest.raises(ValueError, match="needs data for aya_templated, data_provenance"):
    mixtures.plan_aya_mixture("human_heavy", partial)
  plan = mixtures.plan_aya_mixture("human_heavy", partial, allow_missing_sources=True,
                                   extra={"safety_distillation": 3.0})
  # 25:20 kept between the two sources, in the 97% the extra task leaves.
  assert plan.source_weights == pytest.approx({"aya_dataset": 97 * 25 / 45,
                                               "xp3x": 97 * 20 / 45,
                                               "safety_distillation": 3.0})
  assert math.isclose(sum(plan.task_rates.values()), 1.0)


def test_a_source_the_scheme_does_not_weight_is_named(six_sources):
  two_sources = mixtures.WeightingScheme(
      name="test_two_sources", title="two sources", weights={"aya_dataset": 60.0, "xp3x": 40.0})
  mixtures.register_scheme(two_sources)
  with pytest.raises(ValueError, match=r"AYA_SOURCES has aya_templated, aya_translated, "
                     r"data_provenance, sharegpt_command, which scheme test_two_sources "
                     r"gives no weight"):
    mixtures.plan_aya_mixture("test_two_sources", six_sources)
  plan = mixtures.plan_aya_mixture(
      "test_two_sources", {k: six_sources[k] for k in ("aya_dataset", "xp3x")})
  assert plan.source_weights == {"aya_dataset": 60.0, "xp3x": 40.0}


def test_gin_selects_the_scheme(six_sources, small_vocabulary):
  import gin
  from aya_t5x import gin_config

  gin_config.parse_gin(["mixtures/template_heavy.gin"], [
      f"VOCABULARY_PATH = '{small_vocabulary.sentencepiece_model_file}'",
      f"AYA_SOURCES = {six_sources!r}"])
  try:
    name = gin.query_parameter("%MIXTURE_OR_TASK_NAME").scoped_configurable_fn()
  finally:
    gin.clear_config()
  assert name == "aya_template_heavy"
  mixture = seqio.get_mixture_or_task(name)
  xp3x = sum(mixture.get_rate(t) for t in mixture.tasks if t.name.startswith("xp3x."))
  assert xp3x == pytest.approx(0.30)
