"""outcome: the final report scores the predictions of the run's last test evaluation."""

import pytest

from sft_tf.commands import train
from sft_tf.config import validation
from sft_tf.training import outcome
from tests.helpers import REPO, load_config


@pytest.mark.slow
def test_the_final_report_reuses_the_last_test_evaluation(tmp_path, image_folders, monkeypatch):
    config = load_config(REPO / "configs" / "tiny.py")
    config.data.train = f"folder:{image_folders['train']}"
    config.data.test = f"folder:{image_folders['test']}"
    config.phase1.epochs = config.phase2.epochs = 1
    config.export.dir = ""
    validation.validate(config, "train")
    predicted = []  # the size of every split outcome.predict ran the model over

    def predict(model, config, examples, dataset=None):
        predicted.append(len(examples))
        return real(model, config, examples, dataset)

    real = outcome.predict
    monkeypatch.setattr(outcome, "predict", predict)
    metrics = train.run(config, tmp_path / "run")
    assert predicted == [18, 18]  # after each phase; the report predicts nothing again
    test = metrics["phase2"]["test"]
    report = tmp_path / "run" / "report"
    assert f"Accuracy **{test['accuracy']:.4f}**" in (report / "report.md").read_text()
    wrong = len((report / "misclassified.csv").read_text().splitlines()) - 1
    assert wrong == round((1 - test["accuracy"]) * 18)
