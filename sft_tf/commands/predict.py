"""`sft-tf predict`: top-k class names and scores for image files, from an export alone."""

from __future__ import annotations

import json
import sys

from sft_tf.errors import UserError
from sft_tf.serving import export, layout
from sft_tf.serving import predict as predict_lib


def main(
    paths: list[str], model: str | None, workdir: str | None, version: int | None, as_json: bool
) -> int:
    """Predicts `paths` (files or folders) with the export `model` or a workdir's export.

    Returns:
      The exit status: 1 when any file could not be predicted, else 0.
    """
    if not paths:
        raise UserError("`sft-tf predict` needs image files or folders after the flags")
    root = model or _workdir_export(workdir)
    results = predict_lib.predict_files(export.resolve_export(root, version), paths)
    print_predictions(results, as_json)
    return 1 if any("error" in r for r in results) else 0


def _workdir_export(workdir: str | None) -> str:
    """The export a finished run in `workdir` published (its newest)."""
    if not workdir:
        raise UserError("`sft-tf predict` needs --model or --workdir")
    return layout.run_export(workdir)


def print_predictions(results: list[dict], as_json: bool) -> None:
    """Predictions on stdout (a table, or JSON with an "error" field for bad files); one line
    per bad file on stderr in both modes, "sft-tf: FILE: why", after the table."""
    good = [r for r in results if "error" not in r]
    if as_json:
        print(json.dumps(results, indent=2))
    elif good:
        width = max(len(r["file"]) for r in good)
        for r in good:
            ranked = "  ".join(f"{c} {s:.3f}" for c, s in zip(r["classes"], r["scores"]))
            if "labels" in r:  # multi-label: the labels predicted present, else "(none)"
                present = "  ".join(f"{c} {p:.3f}" for c, p in r["labels"].items())
                ranked = f"labels: {present or '(none)'}"
            print(f"{r['file']:<{width}}  {ranked}")
    sys.stdout.flush()
    for r in results:
        if "error" in r:
            print(f"sft-tf: {r['file']}: {r['error']}", file=sys.stderr)
