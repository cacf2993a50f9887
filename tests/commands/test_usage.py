"""Per-command help, and the errors that come back before TensorFlow is imported."""

import json
import shutil

import pytest

from sft_tf.commands import usage
from sft_tf.config import schema
from tests.helpers import REPO, fresh_python, snapshot

# Runs the real entry point with argv, then reports whether TensorFlow was ever imported.
TINY = "--config=configs/tiny.py"
_PROBE = """
import sys
from sft_tf import cli
sys.argv = ["sft-tf", *sys.argv[1:]]
try:
    cli.run()
except SystemExit as e:
    print("TF-LOADED" if "tensorflow" in sys.modules else "TF-ABSENT")
    raise
"""


def _run(*args):
    return fresh_python(_PROBE, *args, timeout=60)


@pytest.mark.parametrize("command", list(usage.VERBS))
def test_every_command_has_help_that_exits_0(command):
    result = _run(command, "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"sft-tf {command}: ") and "Usage: sft-tf " in out
    for flag in usage.VERBS[command].flags:
        assert f"--{flag} " in out, flag
    assert "Example:\n  sft-tf " + command in out
    assert out.rstrip().endswith("TF-ABSENT")


def test_train_help_shows_the_main_fields_with_their_defaults():
    out = _run("train", "-h").stdout
    defaults = schema.base_config()
    assert "phase2.unfreeze_blocks  " in out and f"[{defaults.phase2.unfreeze_blocks!r}]" in out
    assert "model.weights" in out and "(required)" in out


def test_fields_named_in_help_exist():
    defaults = schema.base_config()
    for verb in usage.VERBS.values():
        for field, _ in verb.fields:
            section, name = field.split(".")
            assert name in defaults[section], field


def test_top_level_help_points_to_command_help():
    result = _run("--help")
    assert result.returncode == 0 and "sft-tf COMMAND --help" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--workdir={w}"], "`sft-tf train` needs --config"),
        (["train", TINY], "`sft-tf train` needs --workdir"),
        (["export"], "`sft-tf export` needs --workdir"),
        (["benchmark"], "`sft-tf benchmark` needs --model"),
        (["train", "--config=configs/tnyy.py", "--workdir={w}"], "no such file configs/tnyy.py"),
        (["train", TINY, "--config.data.trian=x"], "did you mean"),
        (["frob"], "expected a command"),
        (
            ["audit", TINY, "--workdir={w}", "--config.data.train=folder:/no"],
            "config.data.train='folder:/no': /no is not a directory",
        ),
        (
            ["train", TINY, "--workdir={w}", "--config.data.test=csv:/no.csv"],
            "config.data.test='csv:/no.csv': /no.csv not found",
        ),
        # Values out of range (`values.check_values`) and an unwritable workdir.
        (
            ["train", TINY, "--workdir={w}", "--config.phase1.learning_rate=nan"],
            "config.phase1.learning_rate=nan must be a finite number",
        ),
        (
            [
                "pretrain",
                TINY,
                "--workdir={w}",
                "--config.pretrain.train=tfds:x",
                "--config.pretrain.epochs=0",
            ],
            "config.pretrain.epochs=0 must be between 1 and",
        ),
        (["demo", TINY, "--workdir=/dev/null/run"], "/dev/null is not a directory"),
        # What a reading command is pointed at.
        (["predict", "--model={w}"], "needs image files or folders after the flags"),
        (["evaluate"], "`sft-tf evaluate` needs --workdir or --model"),
        (["benchmark", "--model={w}"], "w: no integer version folders with a SavedModel"),
        (["export", "--workdir={w}"], "w/config.json not found; is this a workdir written by"),
        (
            ["export", "--workdir={w}", "--config.export.tflite=true"],
            "w/config.json not found; is this a workdir written by",
        ),
        # `export` takes the run's config; only where and what it exports can differ.
        (["export", "--workdir={w}", TINY], "drop --config and set what differs with --config"),
        (
            ["export", "--workdir={w}", "--config.data.test=folder:/x"],
            "config.data.test cannot change at export: it is part of what the run trained",
        ),
        (
            ["export", "--workdir={w}", "--config.export.calibrate=true"],
            "config.export.calibrate cannot change at export: the temperature is fitted",
        ),
        (["export", "--workdir={w}", "--config.export.tflit=1"], "did you mean config.export.t"),
        (["predict", "--workdir={w}", "a.png"], "w/metrics.json not found; pass --model="),
    ],
)
def test_errors_that_need_no_tensorflow_come_before_it(args, message, tmp_path):
    workdir = tmp_path / "w"
    result = _run(*(arg.format(w=workdir) for arg in args))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert result.stdout.strip() == "TF-ABSENT"
    assert not workdir.exists()


def test_export_overrides_are_checked_before_tensorflow(tmp_path):
    """`sft-tf export --workdir=DIR --config.export.X=V`: typed and range-checked against the
    run's own config (DIR/config.json, a real run's), one line each, nothing written."""
    run = tmp_path / "run"
    shutil.copytree(REPO / "tests" / "fixtures" / "legacy_run_v0" / "run", run)
    before = snapshot(run)
    for arg, message in (
        ("--config.export.tflite=maybe", "flag --config.export.tflite=maybe: ('Non-boolean"),
        ("--config.export.tflite_quantization=int4", "tflite_quantization='int4' must be"),
        ("--config.export.top_k=0", "config.export.top_k=0 must be >= 1"),
        ("--config.export.dir=/dev/null/models", "/dev/null is not a directory"),
    ):
        result = _run("export", f"--workdir={run}", arg)
        assert result.returncode == 2, arg
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, arg
        assert result.stdout.strip() == "TF-ABSENT"
    assert snapshot(run) == before


def test_preflight_checks_local_paths_only(tmp_path):
    config = schema.base_config()
    config.data.train = f"folder:{tmp_path}"
    config.data.test = "csv:gs://bucket/labels.csv:test"  # remote: checked when read
    usage.preflight("train", lambda name: "x", config)
    config.data.validation = f"csv:{tmp_path}"
    with pytest.raises(Exception, match="is a folder; give the CSV file itself"):
        usage.preflight("train", lambda name: "x", config)


def test_rerunning_a_finished_train_answers_before_tensorflow(tmp_path):
    """A finished run (the committed legacy record, marked complete) is reported, or a changed
    config refused, without loading TensorFlow or writing anything but the lock."""
    run, images = tmp_path / "run", tmp_path / "images"
    shutil.copytree(REPO / "tests" / "fixtures" / "legacy_run_v0" / "run", run)
    for split in ("train", "test"):
        (images / split).mkdir(parents=True)  # the data is not read for this answer
    config_json = run / "config.json"
    config_json.write_text(config_json.read_text().replace("@IMAGES@", str(images)))
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps({**state, "complete": True}))
    args = [
        "train",
        TINY,
        f"--config.data.train=folder:{images / 'train'}",
        f"--config.data.test=folder:{images / 'test'}",
        "--config.phase1.epochs=1",
        "--config.phase1.cache_features=off",
        "--config.phase2.epochs=2",
        "--config.runtime.checkpoint_every_steps=2",
        f"--workdir={run}",
    ]
    before = snapshot(run)
    done = _run(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{run} holds a complete run (--restart trains again); its metrics are kept",
        "TF-ABSENT",
    ]
    # Export fields: the same run, not exported again; it says how to get them.
    other = _run(*args, "--config.export.top_k=2", "--config.export.tflite=true")
    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines()[1:] == [
        "It was exported with other settings (export.tflite (False -> True); export.top_k "
        f"(5 -> 2)); a new version with these: sft-tf export --workdir={run} "
        "--config.export.tflite=True --config.export.top_k=2",
        "TF-ABSENT",
    ]
    changed = _run(*args, "--config.phase2.epochs=3")
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1
    assert "holds a complete run trained with another config: phase2.epochs (2 -> 3)" in (
        changed.stderr
    )
    assert changed.stdout.strip() == "TF-ABSENT"
    after = snapshot(run)
    assert after.pop(".lock") and after == before
