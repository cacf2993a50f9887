"""`sft-tf audit`: check every data split and write the findings to <workdir>/audit.json."""

from __future__ import annotations

from pathlib import Path

import ml_collections

from sft_tf.data import audit as audit_lib
from sft_tf.data import scan as scan_lib
from sft_tf.files import write_json_atomic
from sft_tf.log import say
from sft_tf.training.inputs import list_target_splits


def audit(config: ml_collections.ConfigDict, workdir: str | Path) -> int:
    """Audits every split of `config.data`, prints the findings, writes <workdir>/audit.json.

    Returns:
      1 when the audit found problems (an empty class, a single class, train/test leakage),
      else 0: the exit status of `sft-tf audit`.
    """
    splits = list_target_splits(config)
    pixels = config.data.max_image_pixels
    scans = {name: scan_lib.scan_images(split, pixels) for name, split in splits.items()}
    report = audit_lib.audit(splits, scans)
    for line in audit_lib.describe(report):
        say(line)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / "audit.json", report)
    say(f"Wrote {workdir / 'audit.json'}")
    return 1 if report["problems"] else 0
