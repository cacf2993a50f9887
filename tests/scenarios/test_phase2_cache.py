"""Phase 2 on cached activations through the real CLI: killed mid phase 2 and resumed, it ends
with the weights of the uninterrupted cached run, bit for bit, reusing its disk cache."""

import json

import pytest

from tests.helpers import KILL_POINTS, final_digest, kill_when, sft_tf, tiny_train_args


def _args(image_folders, *extra):
    return tiny_train_args(
        image_folders["train"],
        image_folders["test"],
        "--config.data.augment=flip",  # two cached variants, picked as the flip would
        "--config.data.cache=disk",  # the activations too: a folder the resumed run reuses
        "--config.data.cache_dir=cache",
        "--config.phase1.epochs=1",
        "--config.phase2.epochs=2",
        "--config.phase2.cache_frozen=on",
        "--config.runtime.checkpoint_every_steps=2",
        "--config.export.dir=",
        "--workdir=run",
        *extra,
    )


@pytest.mark.slow  # three CLI runs
def test_cached_phase2_killed_mid_phase_resumes_to_the_uninterrupted_weights(
    tmp_path, image_folders
):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    reference = sft_tf(*_args(image_folders), cwd=tmp_path / "a").stdout
    assert "on cached activations (phase2.cache_frozen)" in reference
    assert "Phase 2 cache, training: 48 images x 2 variant(s)" in reference
    assert "on disk in cache/phase2/" in reference
    timing = json.loads((tmp_path / "a" / "run" / "metrics.json").read_text())["timing"]
    assert timing["phase 2 cache"] > 0 and timing["total"] > timing["phase 2"]

    kill_when(tmp_path / "b", _args(image_folders), KILL_POINTS["mid phase 2"])
    resumed = sft_tf(*_args(image_folders), cwd=tmp_path / "b").stdout
    assert "Resuming phase2" in resumed
    assert "Phase 2 cache, training: reusing cache/phase2/" in resumed
    assert final_digest(resumed) == final_digest(reference)


def test_on_is_refused_before_anything_is_written(tmp_path, image_folders):
    result = sft_tf(
        *_args(image_folders, "--config.data.augment=flip,rotate"), cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert "cache_frozen='on' works with data.augment '' or 'flip'" in result.stderr
    assert not (tmp_path / "run").exists()
