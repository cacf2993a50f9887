"""The schema: its documented keys, a comment on every field, the scratch baseline."""

from sft_tf.config import schema
from tests.helpers import REPO, load_config


def test_schema_has_the_documented_keys():
    c = schema.base_config()
    for key in (
        "name",
        "seed",
        "model.backbone",
        "model.weights",
        "model.image_size",
        "model.pooling",
        "model.dropout",
        "model.alpha",
        "data.train",
        "data.validation",
        "data.test",
        "data.global_batch_size",
        "data.classes",
        "data.examples_per_class",
        "phase1.epochs",
        "phase1.learning_rate",
        "phase2.epochs",
        "phase2.learning_rate",
        "phase2.unfreeze_blocks",
        "phase2.batchnorm",
        "export.dir",
    ):
        node = c
        for part in key.split("."):
            assert part in node, key
            node = node[part]
    assert c.export.dir == "saved_models" and c.phase2.batchnorm == "frozen"


def test_every_schema_field_has_a_comment():
    source = (REPO / "sft_tf" / "config" / "schema.py").read_text().splitlines()
    body = source[next(i for i, line in enumerate(source) if "def base_config" in line) :]
    body = body[: next(i for i, line in enumerate(body) if line.strip() == "return c")]
    for i, line in enumerate(body):
        stripped = line.strip()
        if stripped.startswith("c.") and "ConfigDict()" not in stripped:
            # The field's comment is on the lines just above it (shared by a short run of fields).
            above = [text.strip() for text in body[max(0, i - 4) : i]]
            assert any(text.startswith("#") for text in above), stripped


def test_scratch_baseline_trains_everything_from_random_init():
    config = load_config(REPO / "configs" / "fashion_mnist.py")
    scratch = schema.scratch_baseline(config)
    assert scratch.model.weights == "" and scratch.phase1.epochs == 0
    assert scratch.phase2.epochs == config.phase1.epochs + config.phase2.epochs
    assert scratch.phase2.unfreeze_blocks == -1 and scratch.phase2.batchnorm == "train"
    assert scratch.export.dir == "" and config.export.dir == "saved_models"
