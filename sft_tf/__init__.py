"""sft_tf: fine-tune a pretrained keras.applications image model and export it for TF Serving."""

__version__ = "0.1.0"

from sft_tf import timing as _timing  # noqa: F401  (the clock starts at import)
