"""`sft-tf benchmark`: size, accuracy and latency of every variant of an export, measured again
on this machine (the accuracy is the one recorded when the export was made)."""

from __future__ import annotations

from sft_tf.errors import UserError
from sft_tf.serving import export, predict, variants


def main(model: str | None, version: int | None) -> int:
    """Measures the export `model` (its newest version, or `version`) and prints the table."""
    if not model:
        raise UserError("`sft-tf benchmark` needs --model=saved_models/NAME")
    folder = export.resolve_export(model, version)
    # Loaded as `predict` loads it: a corrupt export is named as such, with the fix.
    loaded = predict.load_export(folder, "serving_images")
    manifest = export.read_manifest(folder)
    quantization = manifest.get("tflite_quantization") or ""
    recorded = {row["variant"]: row.get("accuracy") for row in manifest.get("variants", [])}
    found = variants.find_variants(folder, quantization, loaded)
    rows = variants.measure(found, folder, manifest["image_size"], recorded)
    print(f"{folder} on this machine (batch-1 latency over {variants.TIMED_CALLS} calls):")
    print(variants.table(rows))
    return 0
