"""`sft-tf audit` in-process: its feature findings are the same on every run of the same data
and config, a random base's too, and it says when the base is random."""

import json
import shutil

import pytest

from tests.helpers import make_image_folder, tiny_config


@pytest.mark.slow  # two audits with their feature passes: ~15 s
def test_two_audits_of_the_same_data_find_the_same_and_warn_about_a_random_base(tmp_path, capsys):
    from sft_tf.commands import audit

    train = make_image_folder(tmp_path / "train", per_class=16)
    # Mislabelled: two images of each colour filed under the next class.
    classes = sorted(p.name for p in train.iterdir())
    for c, name in enumerate(classes):
        for image in sorted((train / name).glob("00[12].*")):
            shutil.move(image, train / classes[(c + 1) % 3] / f"moved_{name}_{image.name}")
    config = tiny_config(seed=3)
    config.data.train = f"folder:{train}"
    config.data.cache_dir = str(tmp_path / "cache")
    reports = []
    for run in ("a", "b"):
        audit.audit(config, tmp_path / run)
        reports.append(json.loads((tmp_path / run / "audit.json").read_text()))
    assert reports[0]["label_issues"] and reports[0]["label_issues"] == reports[1]["label_issues"]
    assert reports[0]["outliers"] == reports[1]["outliers"]
    out = capsys.readouterr().out
    assert out.count("Warning: config.model.weights is empty: a random base's features") == 2
