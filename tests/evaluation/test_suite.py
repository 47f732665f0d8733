"""Running suites on a tiny mT5: rank classification against Hugging Face, generation, meshes."""

import dataclasses
import functools

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf
import torch

import aya_t5x.tasks.evaluation  # noqa: F401  (the benchmarks, as the eval gin files import them)
from aya_t5x import decoding, model, testing
from aya_t5x.checkpoints import hf
from aya_t5x.evaluation import eval_sets, metrics, predict
from aya_t5x.evaluation import suite as suite_lib
from aya_t5x.partitioning import Partitioner, preset_rules
from aya_t5x.testing.models import hf_reference_model, hf_state_dict_numpy
from tests.evaluation import fixtures

CONFIG = dataclasses.replace(testing.TINY, vocab_size=259)  # seqio.ByteVocabulary
BYTES = seqio.ByteVocabulary()


@functools.cache
def reference_and_params():
  reference = hf_reference_model(CONFIG)
  return reference, hf.params_from_hf_state_dict(hf_state_dict_numpy(reference), CONFIG)


def hf_log_likelihood(reference, inputs: np.ndarray, targets: np.ndarray) -> float:
  """Sum over the target tokens (EOS included) of log p(token | inputs, previous tokens)."""
  labels = torch.tensor(targets, dtype=torch.int64)
  with torch.no_grad():
    logits = reference(input_ids=torch.tensor(inputs, dtype=torch.int64)[None],
                       labels=labels[None]).logits
  log_probs = torch.log_softmax(logits[0].double(), dim=-1)
  return float(log_probs[torch.arange(len(labels)), labels].sum())


@fixtures.needs_real_xcopa
def test_rank_classification_picks_the_option_hugging_face_finds_most_likely():
  reference, params = reference_and_params()
  eval_sets.register_benchmark("xcopa", vocabulary=BYTES, data_dir=fixtures.XCOPA_ROOT)
  suite = suite_lib.EvalSuite(
      name="t", tasks=[suite_lib.EvalTask(task="aya_eval.xcopa.sw"),
                       suite_lib.EvalTask(task="aya_eval.xcopa.zh")],
      max_examples=2, batch_size=12, length_bucket=256)  # 32 rows: a part-filled batch
  plan = suite_lib.plan(suite)
  assert [(t.kind, t.language, t.benchmark) for t in plan.tasks] == [
      ("rank", "sw", "aya_eval.xcopa"), ("rank", "zh", "aya_eval.xcopa")]
  result = suite_lib.run(plan, params, CONFIG)
  for task in result.tasks:
    rows = [r for r in seqio.get_mixture_or_task(task.task).get_dataset(
        None, split="validation", shuffle=False).as_numpy_iterator() if r["idx"] < 2]
    expected = {}
    for row in rows:
      key = (int(row["idx"]), int(row["template"]))
      expected.setdefault(key, []).append(
          (hf_log_likelihood(reference, row["inputs"], row["targets"]), bool(row["is_correct"])))
    assert task.examples == 2 and len(task.records) == len(expected) == 8
    for record in task.records:
      options = expected[(record["example"], record["template"])]
      np.testing.assert_allclose(record["scores"], [s for s, _ in options], rtol=1e-4, atol=2e-3)
      best = int(np.argmax([s for s, _ in options]))
      assert record["choice"] == best and record["correct"] == options[best][1]
    for template in range(4):
      hits = [options[int(np.argmax([s for s, _ in options]))][1]
              for (_, t), options in expected.items() if t == template]
      assert task.metrics[f"accuracy_template_{template}"] == 100 * sum(hits) / len(hits)
    assert task.metrics["accuracy"] == np.median(
        [task.metrics[f"accuracy_template_{t}"] for t in range(4)])


QUESTIONS = [("sky colour?", "blue"), ("grass colour?", "green"), ("blood colour?", "red"),
             ("snow colour?", "white"), ("night colour?", "black")]


def register_colour_task():
  def dataset_fn(split, shuffle_files=False, seed=None):
    return tf.data.Dataset.from_tensor_slices({"inputs": [q for q, _ in QUESTIONS],
                                               "targets": [a for _, a in QUESTIONS]})

  if "test_colours" not in seqio.TaskRegistry.names():
    features = {k: seqio.Feature(BYTES, add_eos=True) for k in ("inputs", "targets")}
    seqio.TaskRegistry.add(
        "test_colours", source=seqio.FunctionDataSource(dataset_fn, splits=["validation"]),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features=features, metric_fns=[])


def test_rank_classification_over_answer_options_of_a_plain_task():
  _, params = reference_and_params()
  register_colour_task()
  options = ["blue", "green", "red", "yellow"]  # white and black are no option
  plan = suite_lib.plan(suite_lib.EvalSuite(name="t", tasks=[
      suite_lib.EvalTask(task="test_colours", options=options)], batch_size=8))
  result = suite_lib.run(plan, params, CONFIG).tasks[0]
  # Every (question, option) pair scored in one padded batch, then the best option each.
  pairs = [(q, o) for q, _ in QUESTIONS for o in options]
  inputs, targets = np.zeros((len(pairs), 32), np.int32), np.zeros((len(pairs), 16), np.int32)
  for row, (question, option) in enumerate(pairs):
    inputs[row, :len(question) + 1] = list(BYTES.encode(question)) + [1]
    targets[row, :len(option) + 1] = list(BYTES.encode(option)) + [1]
  scores = np.asarray(decoding.score(params, CONFIG, inputs, targets).log_likelihood)
  best = scores.reshape(len(QUESTIONS), len(options)).argmax(axis=1)
  right = sum(options[b] == answer for b, (_, answer) in zip(best, QUESTIONS))
  assert result.metrics["accuracy"] == pytest.approx(100 * right / len(QUESTIONS))
  assert "2 example(s)" in result.info["targets_not_in_options"]


def nothing_to_say(params):
  """The model with an output layer that can only produce EOS or padding: empty predictions.

  The EOS and padding logits are +x and -x (x the sum of the final activations), every
  other logit 0, so one of the two is always the most likely token.
  """
  params = jax.tree.map(np.asarray, params)
  kernel = np.zeros_like(params["decoder"]["logits_dense"]["kernel"])
  kernel[:, 1], kernel[:, 0] = 1.0, -1.0
  params["decoder"]["logits_dense"]["kernel"] = kernel
  return params


def test_generation_matches_greedy_decoding_and_empty_predictions_score_zero(tmp_path):
  _, params = reference_and_params()
  fixtures.write_tydiqa(tmp_path)
  fixtures.write_flores(tmp_path)
  for name in ("tydiqa", "flores_x_en"):
    eval_sets.register_benchmark(name, vocabulary=BYTES, data_dir=tmp_path)
  names = ["aya_eval.tydiqa.sw", "aya_eval.tydiqa.ja", "aya_eval.flores_x_en.sw"]
  plan = suite_lib.plan(suite_lib.EvalSuite(
      name="t", tasks=[suite_lib.EvalTask(task=n, max_target_length=12) for n in names],
      batch_size=4, length_bucket=128))
  assert [(t.kind, t.language) for t in plan.tasks] == [("generate", "sw"), ("generate", "ja"),
                                                        ("generate", "sw")]
  result = {t.task: t for t in suite_lib.run(plan, params, CONFIG).tasks}
  swahili = result["aya_eval.tydiqa.sw"]
  prompt = swahili.records[0]["inputs"]
  tokens = np.asarray(decoding.greedy_decode(params, CONFIG, np.array(
      [list(BYTES.encode(prompt)) + [1]]), max_decode_length=12))[0]
  tokens = tokens[:np.argmax(tokens == 1)] if (tokens == 1).any() else tokens
  assert swahili.records[0]["prediction"] == BYTES.decode([int(t) for t in tokens if t > 1])
  assert swahili.records[0]["target"] == ["Nairobi", "Nairobi ni mji mkuu"]
  assert result["aya_eval.flores_x_en.sw"].info == {"spbleu_tokenizer": "13a"}

  empty = suite_lib.run(plan, nothing_to_say(params), CONFIG)
  for task in empty.tasks:
    assert task.empty_predictions == task.examples > 0
    assert all(value == 0.0 for value in task.metrics.values()), task.metrics


def test_truncation_keeps_eos_and_the_chosen_end():
  ids = np.array([5, 6, 7, 8, 9, 1])
  right, cut = predict.truncate(ids, 4, "right")
  assert list(right) == [5, 6, 7, 1] and cut
  assert list(predict.truncate(ids, 4, "left")[0]) == [7, 8, 9, 1]
  assert list(predict.truncate(ids[:-1], 3, "left")[0]) == [7, 8, 9]  # no EOS to keep
  assert predict.truncate(ids, 6, "left")[1] is False


def test_scores_on_a_sharded_mesh_equal_one_device():
  _, params = reference_and_params()
  rng = np.random.default_rng(0)
  inputs = [np.append(rng.integers(3, 259, n), 1) for n in (5, 9, 30, 70, 12)]
  targets = [np.append(rng.integers(3, 259, n), 1) for n in (3, 8, 1, 20, 5)]
  batching = predict.Batching(batch_size=8, length_bucket=64, max_input_length=64)
  single, cuts = predict.score(params, CONFIG, inputs, targets, batching, 16)
  assert (cuts.inputs, cuts.targets) == (1, 1)
  partitioner = Partitioner(logical_axis_rules=preset_rules("fsdp"))
  mesh = partitioner.mesh(jax.devices()[:8])
  shardings = partitioner.logical_to_sharding(model.param_logical_axes(CONFIG), mesh)
  sharded = jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), params, shardings)
  on_mesh, _ = predict.score(sharded, CONFIG, inputs, targets, batching, 16,
                             predict.Placement(mesh, partitioner))
  np.testing.assert_allclose(on_mesh, single, rtol=1e-5, atol=1e-4)


def test_metrics_of_a_generative_task_are_required():
  register_colour_task()
  with pytest.raises(ValueError, match=r"no metric functions for generation: give "
                     r"EvalTask\.metric_fns"):
    suite_lib.plan(suite_lib.EvalSuite(name="t", tasks=[suite_lib.EvalTask(task="test_colours")]))
  plan = suite_lib.plan(suite_lib.EvalSuite(name="t", tasks=[
      suite_lib.EvalTask(task="test_colours", metric_fns=[metrics.exact_match])]))
  assert plan.tasks[0].kind == "generate" and plan.tasks[0].language == ""
  with pytest.raises(ValueError, match="Did you mean test_colours"):
    suite_lib.plan(suite_lib.EvalSuite(name="t", tasks=[suite_lib.EvalTask(task="test_colour")]))
