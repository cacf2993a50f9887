"""TF_CONFIG checked before TensorFlow reads it: one line for each way it can be wrong."""

import json
import os
import subprocess
import sys

import pytest

from sft_tf.distribute.tf_config import check_tf_config
from sft_tf.errors import UserError

GOOD = {
    "cluster": {"chief": ["[::1]:3"], "worker": ["localhost:1", "localhost:2"]},
    "task": {"type": "worker", "index": 1},
}


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "--strategy=multi_worker needs TF_CONFIG describing the cluster"),
        ("{garbage", "TF_CONFIG is not JSON (Expecting property name enclosed in double quotes"),
        ("[]", 'TF_CONFIG has no "cluster"'),
        ('{"cluster": {"worker": "localhost:1"}}', 'cluster "worker" must be a list of'),
        ('{"cluster": {"worker": ["a:1"]}}', 'TF_CONFIG has no "task" with "type" and "index"'),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
            'task type "chief" is not in the cluster (worker)',
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
            'task index 1 is out of range: cluster "worker" has 1 address(es), so 0 to 0',
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}}',
            "task index '0' is not a whole number",
        ),
        (  # TensorFlow waits for the ps task forever
            '{"cluster": {"ps": ["a:1"], "worker": ["a:2"]}, '
            '"task": {"type": "worker", "index": 0}}',
            'cluster job "ps" is not one --strategy=multi_worker runs (chief, worker)',
        ),
        (
            '{"cluster": {"chief": ["a:1", "a:2"]}, "task": {"type": "chief", "index": 0}}',
            'cluster "chief" has 2 addresses; give one',
        ),
        (  # TensorFlow: a 50-line InvalidArgumentError
            '{"cluster": {"worker": ["nocolon"]}, "task": {"type": "worker", "index": 0}}',
            "address 'nocolon' is not host:port with a port from 1 to 65535",
        ),
        (  # TensorFlow: accepted without a word
            '{"cluster": {"worker": ["a:99999"]}, "task": {"type": "worker", "index": 0}}',
            "address 'a:99999' is not host:port",
        ),
    ],
)
def test_each_fault_is_one_line(text, message):
    with pytest.raises(UserError) as raised:
        check_tf_config({"TF_CONFIG": text})
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_good_tf_config_is_returned_parsed():
    assert check_tf_config({"TF_CONFIG": json.dumps(GOOD)}) == GOOD


def test_the_cli_answers_garbage_in_one_line_before_tensorflow(tmp_path):
    env = {**os.environ, "TF_CONFIG": "{garbage", "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = ["train", "--config=tiny", "--workdir=run", "--strategy=multi_worker"]
    result = subprocess.run(
        [sys.executable, "-m", "sft_tf", *args, "--config.data.train=folder:/tmp"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("sft-tf: error: TF_CONFIG is not JSON")
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []
