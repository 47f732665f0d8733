"""The `demo` subcommand of `aya-t5x` (wired in by `aya_t5x.cli`).

    aya-t5x demo [--output_dir demo_output] [--seed 0] [--gin.TRAIN_STEPS=200]
    aya-t5x demo --compare        # all three weighting schemes, side by side
    aya-t5x demo --lora           # and LoRA adapters beside the full fine-tuning
    aya-t5x demo --preference     # then a DPO round and its win rate against SFT
"""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
  from aya_t5x.demo import job

  schemes = job.SCHEMES if args.compare else (args.scheme,)
  preference = None
  if args.preference:
    from aya_t5x.demo.preference import PreferenceOptions

    preference = PreferenceOptions(steps=args.preference_steps,
                                   prompts_per_language=args.preference_prompts,
                                   held_out_per_task=args.preference_held_out)
  summary = job.run_demo(job.DemoOptions(output_dir=args.output_dir, schemes=schemes,
                                         seed=args.seed, gin_bindings=args.gin_bindings,
                                         lora=args.lora, preference=preference))
  failed = [s for s, run in summary["runs"].items() if not run["classification"]["all_above"]]
  if failed:
    print(f"note: {', '.join(failed)} did not reach chance + "
          f"{job.ABOVE_CHANCE_MARGIN:.0f} points in every language (see report.md)")
  return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
  """Adds `demo` to the `aya-t5x` parser."""
  from aya_t5x.demo.job import SCHEMES

  demo = subparsers.add_parser(
      "demo", help="the recipe in miniature on CPU: corpus, fine-tuning, evaluation, report",
      description="Builds the demo corpus (ten languages, four task types, the six sources "
                  "in their published schemas), fine-tunes mT5-tiny with the recipe's gin "
                  "files, evaluates it on held-out examples and writes report.md/.json/.png "
                  "in --output_dir. Rerunning resumes.")
  demo.add_argument("--output_dir", default="demo_output")
  demo.add_argument("--scheme", default=SCHEMES[0], choices=SCHEMES,
                    help="the weighting scheme to train (default: the final Aya model's)")
  demo.add_argument("--compare", action="store_true",
                    help="train all three schemes and put them side by side")
  demo.add_argument("--lora", action="store_true",
                    help="also train LoRA adapters (runs/lora.gin) for the first scheme, "
                         "same start and steps, and compare them with full fine-tuning")
  demo.add_argument("--seed", type=int, default=0)
  demo.add_argument("--preference", action="store_true",
                    help="after SFT: pairs from a programmatic judge, DPO, and the judged "
                         "win rate of DPO against SFT per language (docs/preference.md)")
  demo.add_argument("--preference_steps", type=int, default=300, help="DPO steps")
  demo.add_argument("--preference_prompts", type=int, default=48,
                    help="training prompts per language for the pairs")
  demo.add_argument("--preference_held_out", type=int, default=10,
                    help="held-out prompts per evaluation task and language")
  demo.epilog = "Any --gin.NAME=VALUE flag adds a gin binding (training and evaluation)."
  demo.set_defaults(handler=_demo)
