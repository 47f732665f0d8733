"""`aya-t5x eval` end to end on the real XCOPA files, and `aya-t5x eval report` (--compare)."""

import json
import statistics

import jax
import pytest

from aya_t5x import cli, model
from aya_t5x.checkpoints import native
from aya_t5x.data import languages
from aya_t5x.vocab import vocabulary
from tests.evaluation import fixtures

VOCAB_SIZE = 1280  # the SentencePiece model below has at most 1,200 pieces


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """An mT5-tiny checkpoint, a SentencePiece model of XCOPA's text, and the eval's output."""
  folder = tmp_path_factory.mktemp("eval")
  text = [json.loads(line)[field] for path in sorted(fixtures.XCOPA_DIR.glob("val.*.jsonl"))
          for line in path.read_text(encoding="utf-8").splitlines()
          for field in ("premise", "choice1", "choice2")]
  (folder / "text.txt").write_text("\n".join(text), encoding="utf-8")
  spm = vocabulary.train_sentencepiece([folder / "text.txt"], folder / "spm.model",
                                       vocab_size=1200)
  config = model.MT5Config(vocab_size=VOCAB_SIZE, d_model=64, num_heads=4, d_kv=16, d_ff=128,
                           num_encoder_layers=2, num_decoder_layers=2)
  native.save_params(model.init_params(config, jax.random.key(0)), config, folder / "ckpt")
  args = ["eval", "--gin_file", "models/mt5_tiny.gin", "--gin_file", "eval/aya_heldout.gin",
          f"--gin.VOCABULARY_PATH='{spm}'", f"--gin.MT5Config.vocab_size={VOCAB_SIZE}",
          "--checkpoint", str(folder / "ckpt"), "--data_dir", str(fixtures.XCOPA_ROOT),
          "--max_examples", "2", "--batch_size", "16"]
  assert cli.main([*args, "--output_dir", str(folder / "out"), "--allow_missing"]) == 0
  return folder, args


@fixtures.needs_real_xcopa
def test_eval_writes_json_markdown_png_and_predictions(run):
  folder, _ = run
  report = json.loads((folder / "out" / "eval.json").read_text(encoding="utf-8"))
  assert report["suite"] == "aya_heldout"
  assert [t["task"] for t in report["tasks"]] == [f"aya_eval.xcopa.{code}" for code in
                                                  ("et ht id it qu sw ta th tr vi zh".split())]
  # XNLI (15), XStoryCloze (10) and XWinograd (6) have no files here: skipped and reported.
  assert len(report["skipped"]) == 31 and "xnli.dev.tsv not found" in report["skipped"][0][
      "reason"]
  for task in report["tasks"]:
    assert task["examples"] == 2 and task["kind"] == "rank"
    # The score again, from the predictions file: each template's share of right choices,
    # then the median over the templates.
    records = [json.loads(line) for line in (folder / "out" / "predictions" /
                                             f"{task['task']}.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 4
    per_template = [100 * statistics.mean(r["correct"] for r in records if r["template"] == t)
                    for t in range(4)]
    assert task["score"] == pytest.approx(statistics.median(per_template))
    for record in records:
      assert record["choice"] == max(range(2), key=lambda i: record["scores"][i])
  xcopa = report["benchmarks"][0]
  scores = {t["language"]: t["score"] for t in report["tasks"]}
  assert xcopa["average"] == pytest.approx(statistics.mean(scores.values()))
  for group in languages.GROUPS:
    members = [s for code, s in scores.items()
               if (language := languages.find_language(code)) and language.group == group]
    assert xcopa["groups"][group] == pytest.approx(statistics.mean(members))
  assert report["tasks"][4]["group"] == ""  # Quechua is not one of mT5's languages
  markdown = (folder / "out" / "eval.md").read_text(encoding="utf-8")
  assert "| xcopa | accuracy |" in markdown and "| aya_eval.xcopa.sw | sw Swahili | LR |" in \
      markdown and "## Skipped (data missing)" in markdown
  assert (folder / "out" / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@fixtures.needs_real_xcopa
def test_missing_data_fails_before_the_checkpoint_is_read(run, tmp_path, capsys):
  _, args = run
  # A folder that exists but holds no checkpoint: reading it would fail, so the data error
  # shows that nothing was read.
  (tmp_path / "empty_checkpoint").mkdir()
  args = [a if a != str(run[0] / "ckpt") else str(tmp_path / "empty_checkpoint") for a in args]
  assert cli.main([*args, "--output_dir", str(tmp_path / "out")]) == 2
  error = capsys.readouterr().err
  assert "XNLI: 1 file(s) not found" in error and "xnli.dev.tsv" in error
  assert "XWinograd: 6 file(s) not found" in error and "--allow_missing" in error
  assert not (tmp_path / "out").exists()
  # A checkpoint that does not exist is named first, before the data is looked at.
  args = [a if a != str(tmp_path / "empty_checkpoint") else str(tmp_path / "missing")
          for a in args]
  assert cli.main([*args, "--output_dir", str(tmp_path / "out")]) == 2
  error = capsys.readouterr().err
  assert "missing' does not exist" in error and "XNLI" not in error


@fixtures.needs_real_xcopa
def test_report_compares_runs_side_by_side(run, tmp_path, capsys):
  folder, _ = run
  report = json.loads((folder / "out" / "eval.json").read_text(encoding="utf-8"))
  better = json.loads(json.dumps(report))
  better["checkpoint"] = "aya"
  for task in better["tasks"]:
    task["score"] += 10
  for bench in better["benchmarks"]:
    bench["average"] += 10
  better["average"] += 10
  (tmp_path / "aya").mkdir()
  (tmp_path / "aya" / "eval.json").write_text(json.dumps(better))
  assert cli.main(["eval", "report", "--compare", str(folder / "out" / "eval.json"),
                   str(tmp_path / "aya"), "--names", "mT0x", "Aya",
                   "--output_dir", str(tmp_path / "compare")]) == 0
  printed = capsys.readouterr().out
  average = report["benchmarks"][0]["average"]
  assert (f"| xcopa | accuracy | {average:.2f} | {average + 10:.2f} | +10.00 |" in printed)
  comparison = json.loads((tmp_path / "compare" / "compare.json").read_text())
  assert [r["name"] for r in comparison["runs"]] == ["mT0x", "Aya"]
  assert comparison["tasks"][5]["values"] == [report["tasks"][5]["score"],
                                              report["tasks"][5]["score"] + 10]
  assert (tmp_path / "compare" / "compare.md").is_file()
  assert (tmp_path / "compare" / "compare.png").read_bytes()[:4] == b"\x89PNG"
  assert comparison["coverage"] is None and "cover different tasks" not in printed
  # A run over fewer tasks (another suite, --allow_missing): flagged, and averaged over
  # the tasks both runs share.
  fewer = json.loads(json.dumps(better))
  dropped = [t for t in fewer["tasks"] if t["language"] not in ("sw", "et")]
  fewer["tasks"] = [t for t in fewer["tasks"] if t["language"] in ("sw", "et")]
  (tmp_path / "fewer").mkdir()
  (tmp_path / "fewer" / "eval.json").write_text(json.dumps(fewer))
  assert cli.main(["eval", "report", "--compare", str(folder / "out" / "eval.json"),
                   str(tmp_path / "fewer"), "--names", "mT0x", "Aya"]) == 0
  printed = capsys.readouterr().out
  assert f"Aya lacks {len(dropped)} (e.g. {dropped[0]['task']})" in printed
  shared = [t["score"] for t in report["tasks"] if t["language"] in ("sw", "et")]
  mean = sum(shared) / len(shared)
  assert (f"| *average over the {len(shared)} shared tasks* |  | {mean:.2f} | {mean + 10:.2f} "
          "| +10.00 |") in printed
  # One report alone is printed and re-rendered next to it.
  assert cli.main(["eval", "report", str(tmp_path / "aya" / "eval.json")]) == 0
  assert "# Evaluation: aya_heldout" in capsys.readouterr().out
  assert (tmp_path / "aya" / "eval.png").is_file()


def test_bad_report_and_missing_suite_are_clear_errors(tmp_path, capsys):
  (tmp_path / "eval.json").write_text(json.dumps({"tasks": []}))
  assert cli.main(["eval", "report", str(tmp_path / "eval.json")]) == 2
  assert "not an evaluation report" in capsys.readouterr().err
  (tmp_path / "x").mkdir()
  assert cli.main(["eval", "--gin_file", "models/mt5_tiny.gin", "--checkpoint",
                   str(tmp_path / "x"), "--output_dir", str(tmp_path)]) == 2
  assert "no evaluation suite configured: add one of --gin_file eval/aya_heldout.gin" in \
      capsys.readouterr().err
