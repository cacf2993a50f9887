"""The real `sft-tf` CLI in subprocesses: train, predict, evaluate, export, and its errors."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, sft_tf, tiny_train_args


def test_help_lists_every_command(tmp_path):
    out = sft_tf("--help", cwd=tmp_path).stdout
    for command in ("train", "pretrain", "evaluate", "export", "predict", "demo"):
        assert f"\n  {command} " in out


@pytest.mark.slow
def test_home_in_paths_and_a_packaged_config_from_another_folder(tmp_path, image_folders):
    """`--workdir=~/runs/t` and `export.dir=~/models` land in $HOME, not in a folder named `~`
    of the current one; `--config=tiny` is the packaged configs/tiny.py, from any folder."""
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    cwd.mkdir()
    args = [
        "train",
        "--config=tiny",
        f"--config.data.train=folder:{image_folders['train']}",
        "--config.phase2.epochs=0",
        "--workdir=~/runs/t",
        "--config.export.dir=~/models",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "sft_tf", *args], capture_output=True, text=True, cwd=cwd, env=env
    )
    assert result.returncode == 0, result.stderr
    assert not (cwd / "~").exists()
    config = json.loads((home / "runs" / "t" / "config.json").read_text())
    assert config["export"]["dir"] == f"{home}/models"
    assert (home / "models" / "tiny" / "1" / "saved_model.pb").is_file()


def test_a_typo_in_a_config_file_stops_before_anything_is_written(tmp_path):
    (tmp_path / "typo.py").write_text(
        "from sft_tf import config_lib\n"
        "def get_config():\n"
        "    c = config_lib.base_config()\n"
        "    c.data.augmnet = 'flip'\n"
        "    return c\n"
    )
    args = ["train", "--config=typo.py", "--workdir=run", "--config.data.train=folder:/tmp"]
    result = sft_tf(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "sft-tf: error: --config=typo.py: typo.py sets config.data.augmnet, which is not a "
        "config field (did you mean config.data.augment?); fix the file\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typo.py"]


def _train_args(image_folders) -> tuple[str, ...]:
    return tuple(
        tiny_train_args(
            image_folders["train"],
            image_folders["test"],
            "--config.phase2.unfreeze_blocks=1",
            "--workdir=run",
        )
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_folders):
    """One real `sft-tf train` run on image folders with configs/tiny.py."""
    cwd = tmp_path_factory.mktemp("cli")
    return cwd, sft_tf(*_train_args(image_folders), cwd=cwd)


def test_train_writes_workdir_and_export(trained):
    cwd, result = trained
    assert "Phase 1 (head only, base frozen)" in result.stdout
    assert "Phase 2 (1 top blocks open: block_16; BatchNorm frozen)" in result.stdout
    assert "Test accuracy after phase2" in result.stdout
    config = json.loads((cwd / "run" / "config.json").read_text())
    assert config["phase2"]["unfreeze_blocks"] == 1
    metrics = json.loads((cwd / "run" / "metrics.json").read_text())
    assert metrics["export"] == "saved_models/tiny/1"
    # tiny.py has no pretrained weights: validate says so; each phase whose test accuracy is
    # within noise of the majority class (a third, +-0.22 on 18 images) says so too.
    assert result.stdout.startswith("Warning: config.model.weights is empty")
    for phase in ("phase1", "phase2"):
        chance = metrics[phase]["test"]["accuracy"] <= 1 / 3 + 2 * (2 / 9 / 18) ** 0.5
        warned = [w for w in metrics.get("warnings", []) if w.startswith(f"{phase}: test")]
        assert bool(warned) == chance and all(f"Warning: {w}" in result.stdout for w in warned)
    assert (cwd / "saved_models" / "tiny" / "1" / "saved_model.pb").is_file()
    # The evaluation report of the final model, with the curves of both phases.
    report = cwd / "run" / "report"
    for name in ("report.md", "metrics.json", "confusion_matrix.png", "curves.png"):
        assert (report / name).is_file(), name
    assert (
        json.loads((report / "metrics.json").read_text())["accuracy"]
        == (metrics["phase2"]["test"]["accuracy"])
    )


@pytest.mark.slow
def test_predict_from_export_and_workdir(trained, image_folders):
    cwd, _ = trained
    cat = sorted((image_folders["test"] / "cat").glob("*.*"))[0]
    args = ["predict", "--model=saved_models/tiny", "--json", str(cat), "missing.png"]
    out = sft_tf(*args, cwd=cwd, check=False)
    assert out.returncode == 1  # a file failed; the others are still predicted
    results = json.loads(out.stdout)
    assert results[0]["classes"][0] in ("cat", "dog", "fox") and len(results[0]["scores"]) == 3
    assert results[1]["file"] == "missing.png" and "error" in results[1]
    table = sft_tf("predict", "--workdir=run", str(image_folders["test"] / "dog"), cwd=cwd).stdout
    assert len(table.strip().splitlines()) == 6  # one line per image in the folder


@pytest.mark.slow
def test_output_piped_into_a_reader_that_stops_is_not_an_error(trained, image_folders):
    """`sft-tf predict ... | head -1`: the reader closes the pipe; sft-tf stops without a word,
    with the status of a writer ended by SIGPIPE."""
    cwd, _ = trained
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = ["predict", "--model=saved_models/tiny", str(image_folders["test"])]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sft_tf", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )
    proc.stdout.close()  # closed before sft-tf prints anything: its first line hits the pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert "error" not in err and "Traceback" not in err and "Exception ignored" not in err


@pytest.mark.slow  # three more CLI runs on the trained workdir: ~35 s
def test_evaluate_and_reexport(trained, image_folders):
    cwd, _ = trained
    metrics = json.loads(sft_tf("evaluate", "--workdir=run", cwd=cwd).stdout)
    train_metrics = json.loads((cwd / "run" / "metrics.json").read_text())
    assert metrics["accuracy"] == train_metrics["phase2"]["test"]["accuracy"]
    from_export = json.loads(
        sft_tf(
            "evaluate",
            "--model=saved_models/tiny",
            f"--config={REPO / 'configs' / 'tiny.py'}",
            f"--config.data.test=folder:{image_folders['test']}",
            cwd=cwd,
        ).stdout
    )
    assert from_export["accuracy"] == metrics["accuracy"]
    # A TFLite file the run was exported without (as a `train` rerun with
    # --config.export.tflite=true suggests: tests/commands/test_usage.py).
    config = (cwd / "run" / "config.json").read_text()
    out = sft_tf("export", "--workdir=run", "--config.export.tflite=True", cwd=cwd).stdout
    assert "saved_models/tiny/2" in out
    assert "This version's export settings: export.tflite=True (config.json is unchanged)" in out
    version = cwd / "saved_models" / "tiny" / "2"
    assert (version / "assets.extra" / "tflite" / "model.tflite").stat().st_size > 10_000
    assert not (cwd / "saved_models" / "tiny" / "1" / "assets.extra" / "tflite").exists()
    assert (cwd / "run" / "config.json").read_text() == config
    # The run now names its newest export: `predict --workdir=run` uses version 2.
    after = json.loads((cwd / "run" / "metrics.json").read_text())
    assert after == {**train_metrics, "export": "saved_models/tiny/2"}
    nowhere = sft_tf("export", "--workdir=run", "--config.export.dir=", cwd=cwd, check=False)
    assert nowhere.returncode == 2 and nowhere.stderr.count("\n") == 1
    assert "config.export.dir is empty, so there is nowhere to export to" in nowhere.stderr
    assert json.loads((cwd / "run" / "metrics.json").read_text()) == after


def test_none_unsets_a_field_the_config_file_sets(trained, image_folders):
    """tiny.py sets model.alpha; `--config.model.alpha=None` unsets it. On the finished run that
    is a config change, answered before TensorFlow loads; None before a later value is no
    change."""
    cwd, _ = trained
    args = _train_args(image_folders)  # the run's own command
    unset = sft_tf(*args, "--config.model.alpha=None", cwd=cwd, check=False)
    assert unset.returncode == 2 and "model.alpha (0.35 -> None)" in unset.stderr
    again = sft_tf(*args, "--config.model.alpha=None", "--config.model.alpha=0.35", cwd=cwd)
    assert "holds a complete run" in again.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--config.model.image_size=16"],
            "config.model.image_size=16 is below MobileNetV2's minimum 32",
        ),
        (["--config.phase2.epochs=None"], "config.phase2.epochs cannot be unset (None)"),
        # The same kinds of mistake as tests/scenarios/test_bad_input.py: in CI only.
        pytest.param(
            ["--config.data.train=folder:/no/such/dir"],
            "/no/such/dir is not a directory",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--config.model.backbone=ResNet51"],
            "'ResNet51' is not a keras.applications backbone",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_input_is_one_line_and_leaves_exports_alone(trained, args, message):
    cwd, _ = trained
    before = sorted(p.name for p in (cwd / "saved_models" / "tiny").iterdir())
    result = sft_tf(
        "train",
        f"--config={REPO / 'configs' / 'tiny.py'}",
        "--workdir=run",
        "--config.data.train=folder:/tmp",
        *args,
        cwd=cwd,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert sorted(p.name for p in (cwd / "saved_models" / "tiny").iterdir()) == before


@pytest.mark.slow  # tests/scenarios/test_bad_input.py's "unknown key" checks more, by default
def test_mistyped_config_key_is_an_error(tmp_path):
    result = sft_tf(
        "train",
        f"--config={REPO / 'configs' / 'tiny.py'}",
        "--workdir=run",
        "--config.model.backbon=ResNet50",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0 and "backbon" in result.stderr
    assert not (tmp_path / "run").exists()


def test_unknown_command(tmp_path):
    result = sft_tf("fit", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "expected a command" in result.stderr
