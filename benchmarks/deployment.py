"""Deployment variants of the demo's fine-tuned model: size, test accuracy, latency, measured
in one run on this machine.

Exports the model of runs/demo/finetune (run `make demo` first) once per TFLite quantization
(float16, dynamic_range, int8) and once with ONNX, each through the same path `sft-tf train`
uses (accuracy guard included, on the demo's test split), into runs/deployment/, then prints
one row per variant. Nothing else should run meanwhile: latencies are wall times.

  .venv/bin/python benchmarks/deployment.py
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "runs" / "demo" / "finetune"))
    parser.add_argument("--out", default=str(REPO / "runs" / "deployment"))
    args = parser.parse_args()

    from sft_tf.serving import export, variants
    from sft_tf.training import outcome, trained
    from sft_tf.training.inputs import load_target_splits

    config, model, class_names = trained.load_trained(args.workdir)
    train, validation, test = load_target_splits(config)
    rows = []
    for quantization, onnx in (("float16", True), ("dynamic_range", False), ("int8", False)):
        variant = copy.deepcopy(config)
        variant.name = f"{config.name}_{quantization}"
        variant.export.dir = args.out
        variant.export.tflite = True
        variant.export.tflite_quantization = quantization
        variant.export.onnx = onnx
        variant.export.max_accuracy_drop = 1.0  # measure every variant, publish it anyway
        with contextlib.redirect_stdout(io.StringIO()):
            path = outcome.export_model(
                variant, model, class_names, {}, train=train, validation=validation, test=test
            )
        measured = export.read_manifest(path)["variants"]
        rows += [r for r in measured if r["variant"] != "SavedModel" or not rows]
        print(f"exported {path}", flush=True)
    print(
        f"\nThe demo model ({config.model.backbone} {config.model.image_size} px) on {len(test)} "
        f"test images, batch-1 latency over {variants.TIMED_CALLS} calls:\n"
    )
    print(variants.table(rows))


if __name__ == "__main__":
    main()
