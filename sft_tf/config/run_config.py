"""A run's own config as a --config file: `--config=<this file>:DIR` reads DIR/config.json.

`sft-tf export --workdir=DIR --config.export.FIELD=VALUE` puts it on the command line
(`config.flags.export_overrides`), so ml_collections parses the overrides against the run's
config exactly as it parses a configs/*.py file's.
"""

from pathlib import Path

from sft_tf.config import files
from sft_tf.training.layout import CONFIG_FILE


def get_config(workdir: str):
    return files.load(Path(workdir) / CONFIG_FILE)
