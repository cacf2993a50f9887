"""A real 2-worker MultiWorkerMirroredStrategy cluster on localhost, through the CLI.

Both processes run the same `python -m sft_tf train` command with their own TF_CONFIG; the
collectives go over gRPC between them exactly as between two machines.
"""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from sft_tf.distribute import workers
from sft_tf.model import classifier
from sft_tf.model import weights as weights_lib
from sft_tf.training import trained
from tests.helpers import REPO, tiny_classifier

TIMEOUT_S = 420


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all are bound so the kernel cannot hand out one port twice.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_cluster(args: list[str], workers: int = 2) -> list[tuple[int, str]]:
    """Starts `workers` CLI processes as one cluster; returns (exit code, output) per worker."""
    ports = _free_ports(workers)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    processes = []
    for index in range(workers):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            TF_CPP_MIN_LOG_LEVEL="2",
            CUDA_VISIBLE_DEVICES="",
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "sft_tf", *args],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    results = []
    try:
        for p in processes:
            out, _ = p.communicate(timeout=TIMEOUT_S)
            results.append((p.returncode, out))
    finally:
        for p in processes:
            if p.poll() is None:  # a worker waiting forever on a dead peer's all-reduce
                p.kill()
                p.communicate()
    return results


def _line(pattern: str, output: str) -> re.Match:
    match = re.search(pattern, output, re.MULTILINE)
    assert match, f"no line matching {pattern!r} in:\n{output[-3000:]}"
    return match


@pytest.mark.slow
def test_two_workers_train_both_phases_in_sync_and_only_the_chief_writes(tmp_path, image_folders):
    workdir = tmp_path / "run"
    exports = tmp_path / "saved_models"
    # A base with working activations (random-init BatchNorm statistics would zero them), so
    # the all-reduced gradients reach the opened blocks and the weights really move.
    backbone = tmp_path / "backbone.weights.h5"
    weights_lib.save_backbone_weights(
        classifier.get_base(tiny_classifier()),
        backbone,
        {"backbone": "MobileNetV2", "options": {"alpha": 0.35}},
    )
    results = _run_cluster(
        [
            "train",
            "--config=configs/tiny.py",
            f"--workdir={workdir}",
            "--strategy=multi_worker",
            f"--config.data.train=folder:{image_folders['train']}",
            f"--config.data.validation=folder:{image_folders['test']}",
            f"--config.data.test=folder:{image_folders['test']}",
            # The test images double as validation images: this test is about the cluster,
            # so the leakage that makes is only warned about.
            "--config.data.on_leakage=warn",
            f"--config.export.dir={exports}",
            f"--config.model.weights={backbone}",
        ]
    )
    for index, (code, out) in enumerate(results):
        assert code == 0, f"worker {index} exited {code}:\n{out[-5000:]}"
    (_, chief_out), (_, worker_out) = results

    # Both workers form one 2-replica cluster, and both phases ran on both.
    for out in (chief_out, worker_out):
        _line(r"^Strategy MultiWorkerMirroredStrategy: 2 replica\(s\)", out)
        assert len(re.findall(r"^Strategy ", out, re.MULTILINE)) == 1  # printed once
        _line(r"^Global batch 8 = 4 per replica x 2", out)
        _line(r"^Phase 1 ", out)
        _line(r"^Phase 2 ", out)
        # Phase 2 on cached activations, each worker caching only its own shard of 24 images.
        _line(r"^  on cached activations \(phase2.cache_frozen\)", out)
        _line(r"^Phase 2 cache, shard: 24 images x 1 variant", out)

    # Each worker read its own half of the 48 training files: indices 0::2 and 1::2.
    shards = []
    for index, out in enumerate((chief_out, worker_out)):
        m = _line(
            rf"^Input pipeline {index} of 2: reads (\d+) of 48 training examples "
            rf"\(indices {index}::2, sha256 (\w+)\), (\d+) steps per epoch",
            out,
        )
        shards.append(m.groups())
    assert [s[0] for s in shards] == ["24", "24"]
    assert shards[0][1] != shards[1][1]
    # The same step count on both, or one would wait forever for the other's all-reduce.
    assert shards[0][2] == shards[1][2] == "6"

    # The all-reduced updates kept the workers identical, and the chief saved exactly that.
    digests = [
        _line(r"^Final weights sha256 (\w+)", out).group(1) for out in (chief_out, worker_out)
    ]
    assert digests[0] == digests[1]
    _, model, _ = trained.load_trained(workdir)
    assert workers.weights_digest(model.weights) == digests[0]

    # Only the chief wrote: one export version, and the non-chief's scratch dir is gone.
    versions = [p.name for p in (exports / "tiny").iterdir() if p.name.isdigit()]
    assert len(versions) == 1, sorted(p.name for p in (exports / "tiny").iterdir())
    assert _line(r"^Exported (.+)$", chief_out).group(1).endswith(f"/tiny/{versions[0]}")
    # The other worker exported into its scratch dir (its export check runs collectives the
    # chief's must meet), and that dir is gone.
    assert "/workertemp_worker_1/" in _line(r"^Exported (.+)$", worker_out).group(1)
    assert not list(workdir.glob("workertemp*"))
    for name in ("config.json", "metrics.json", "history.json", "labels.txt", "logs"):
        assert (workdir / name).exists(), name
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["classes"] == ["cat", "dog", "fox"]
    # Test metrics cover the whole test split on every worker, and the workers agree.
    for phase in ("phase1", "phase2"):
        assert metrics[phase]["test"]["examples"] == 18
    accuracies = [
        _line(r"^Test accuracy after phase2: ([\d.]+)", out).group(1)
        for out in (chief_out, worker_out)
    ]
    assert accuracies[0] == accuracies[1]
    # Training did something: the weights are not the ones the run started from.
    history = json.loads((workdir / "history.json").read_text())
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert len(history["val_loss"]) == 2  # validation ran under the cluster too
