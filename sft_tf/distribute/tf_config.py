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
    _check_cluster(cluster)
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
    if not isinstance(index, int) or isinstance(index, bool):
        raise UserError(f"TF_CONFIG: task index {index!r} is not a whole number (0, 1, ...)")
    if not 0 <= index < len(cluster[kind]):
        raise UserError(
            f'TF_CONFIG: task index {index!r} is out of range: cluster "{kind}" has '
            f"{len(cluster[kind])} address(es), so 0 to {len(cluster[kind]) - 1}"
        )
    return value


# The jobs MultiWorkerMirroredStrategy runs. With any other job in the cluster (a parameter
# server's "ps"), every worker waits for that task's collectives forever: measured, a
# {"ps": [...], "worker": [...]} cluster hung with no output until killed.
_JOBS = ("chief", "worker")


def _check_cluster(cluster: dict) -> None:
    """Raises UserError unless every job is chief (one address) or worker, and every address
    is "host:port": TensorFlow answers a missing port with a 50-line traceback and took
    port 99999 without a word."""
    for job, addresses in cluster.items():
        if job not in _JOBS:
            raise UserError(
                f'TF_CONFIG: cluster job "{job}" is not one --strategy=multi_worker runs (chief, '
                "worker); the workers would wait for it forever. Remove it from the cluster"
            )
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise UserError(f'TF_CONFIG: cluster "{job}" must be a list of "host:port" strings')
        if job == "chief" and len(addresses) != 1:
            raise UserError(f'TF_CONFIG: cluster "chief" has {len(addresses)} addresses; give one')
        for address in addresses:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise UserError(
                    f'TF_CONFIG: cluster "{job}" address {address!r} is not host:port with a '
                    "port from 1 to 65535"
                )
