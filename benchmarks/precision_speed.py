"""Training step time in float32 and under bfloat16 autocast, per recipe, on this CPU.

    python benchmarks/precision_speed.py [--recipes sprint,speed,best] [--rounds 3] [--write-docs]

The step that `precision="auto"` times before choosing (digits.precision.step_seconds: the
recipe's model at its batch size, forward, backward and update, the shortest of three steps
after a warm-up), taken in turn in both precisions for `--rounds` rounds; the table shows the
shortest per precision and what `auto` picks from them. Writes the "Precision on the CPU"
section of docs/benchmarks.md with --write-docs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from digits.models import create_model  # noqa: E402
from digits.precision import BF16_MARGIN, both_step_seconds, pick  # noqa: E402
from digits.recipes import get_recipe  # noqa: E402
from docs_section import replace_section  # noqa: E402
from ood_digits import machine, wrap  # noqa: E402

SECTION = "## Precision on the CPU"
BEFORE = "## Prediction"
# The network `sprint` trained before its first layer was slimmed and cropped, for comparison.
EXTRA: dict[str, tuple[str, dict[str, Any], int]] = {
    "fast-cnn (32 first filters, 28x28)": ("fast-cnn", {}, 256)
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="sprint,speed,best")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    cases = {}
    for name in args.recipes.split(","):
        config = get_recipe(name)
        cases[f"`{name}`: {config.model}"] = (
            config.model,
            config.factory_args(),
            config.batch_size,
        )
    cases.update(EXTRA)
    lines = [
        SECTION,
        "",
        f"One training step (forward, backward, update) at the recipe's batch size, shortest of "
        f"{args.rounds} rounds of 3 timed steps, float32 and bfloat16 autocast in turn, on "
        f"{machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}. `auto` "
        f"takes bfloat16 only below {100 * BF16_MARGIN:.0f} % of float32's time "
        "(digits.precision).",
        "",
        "| model | batch | float32 | bfloat16 | bf16 / fp32 | auto picks |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, (model_name, model_args, batch) in cases.items():
        model = create_model(model_name, **model_args)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        fp32, bf16 = both_step_seconds(model, batch, args.rounds)
        lines.append(
            f"| {label} | {batch} | {1000 * fp32:.1f} ms | {1000 * bf16:.1f} ms | "
            f"{bf16 / fp32:.2f} | {pick(fp32, bf16)} |"
        )
        print(lines[-1], flush=True)
    command = "python benchmarks/precision_speed.py " + " ".join(sys.argv[1:])
    lines += ["", f"`{command.strip()}`", ""]
    text = "\n".join(wrap(line) for line in lines)
    print(text)
    if args.write_docs:
        replace_section(text, SECTION, before=BEFORE)


if __name__ == "__main__":
    main()
