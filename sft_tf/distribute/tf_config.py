"""TF_CONFIG checked before TensorFlow reads it: `--strategy=multi_worker` takes the cluster
from this environment variable, and TensorFlow answers a malformed one with a long traceback
(a JSONDecodeError 51 lines deep) or a hang waiting for workers that do not exist. Loads no
TensorFlow: the CLI checks it before TensorFlow's import.
"""

from __future__ import annotations

import json
import os

from sft_tf.errors import UserError

_EXAMPLE = (
    'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)


def check_tf_config(environ=os.environ) -> dict:
    """The parsed TF_CONFIG of a multi-worker run.

    Raises:
      UserError: TF_CONFIG is unset, not JSON, or does not describe this process's place in a
        cluster (no "cluster" of address lists, no "task", a task type not in the cluster, an
        index out of range); one line naming what is wrong.
    """
    text = environ.get("TF_CONFIG", "")
    if not text.strip():
        raise UserError(
            f"--strategy=multi_worker needs TF_CONFIG describing the cluster; {_EXAMPLE}"
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(
            f"TF_CONFIG is not JSON ({e.msg} at character {e.pos}); {_EXAMPLE}"
        ) from None
    cluster = value.get("cluster") if isinstance(value, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise UserError(f'TF_CONFIG has no "cluster" (jobs and their host:port lists); {_EXAMPLE}')
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise UserError(f'TF_CONFIG: cluster "{job}" must be a list of "host:port" strings')
    task = value.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UserError(
            f'TF_CONFIG has no "task" with "type" and "index" (this process\'s place); {_EXAMPLE}'
        )
    kind, index = task["type"], task["index"]
    if kind not in cluster:
        raise UserError(
            f'TF_CONFIG: task type "{kind}" is not in the cluster ({", ".join(cluster)})'
        )
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise UserError(
            f'TF_CONFIG: task index {index!r} is out of range: cluster "{kind}" has '
            f"{len(cluster[kind])} address(es), so 0 to {len(cluster[kind]) - 1}"
        )
    return value
