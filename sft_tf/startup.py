"""Process start-up for the CLI: TensorFlow imported with its chatter muted, quiet logs."""

from __future__ import annotations

import os
import sys


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and probes for GPUs with its C++ start-up chatter muted.

    TF 2.21 logs those lines before its log level applies, so TF_CPP_MIN_LOG_LEVEL cannot
    hide them, and they would bury one-line error messages. Set TF_CPP_MIN_LOG_LEVEL=0 to see
    them again. Python errors raised by the import are still shown.
    """
    from sft_tf import timing

    timing.count_start_up()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                import tensorflow as tf

                tf.config.list_physical_devices("GPU")  # probes CUDA, which logs when absent
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    # absl routes TF's Python logging to stderr at INFO under app.run: keep warnings and up
    # from absl, errors from TF (its retracing notes and SavedModel chatter are not actionable).
    import tensorflow as tf
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    tf.get_logger().setLevel("ERROR")
