"""What config files import: `config_lib.base_config()`, the whole schema with its defaults.

`configs/*.py` and users' own config files start from it (`from sft_tf import config_lib`);
the name stays stable for files written against earlier versions. The schema itself lives in
`sft_tf.config.schema`, its checks in `sft_tf.config.validation`.
"""

from sft_tf.config.schema import base_config

__all__ = ["base_config"]
