"""The schema, validation messages, every config file, and config.json round trips."""

import importlib.util

import pytest

from sft_tf import config_lib
from sft_tf.errors import UserError
from tests.conftest import REPO

CONFIG_FILES = sorted((REPO / "configs").glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def test_schema_has_the_documented_keys():
    c = config_lib.base_config()
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
    source = (REPO / "sft_tf" / "config_lib.py").read_text().splitlines()
    body = source[next(i for i, line in enumerate(source) if "def base_config" in line) :]
    body = body[: next(i for i, line in enumerate(body) if line.strip() == "return c")]
    for i, line in enumerate(body):
        stripped = line.strip()
        if stripped.startswith("c.") and "ConfigDict()" not in stripped:
            # The field's comment is on the lines just above it (shared by a short run of fields).
            above = [text.strip() for text in body[max(0, i - 4) : i]]
            assert any(text.startswith("#") for text in above), stripped


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_config_files_load_and_validate(path, image_folders):
    config = _load(path)
    if not config.data.train:  # configs/tiny.py takes its data on the command line
        config.data.train = f"folder:{image_folders['train']}"
    assert config.name
    # Configs are runnable documentation: the docstring holds the command.
    assert "sft-tf " in path.read_text().split('"""')[1]
    config_lib.validate(config, "pretrain" if config.pretrain.train else "train")


def _tiny(**changes):
    config = _load(REPO / "configs" / "tiny.py")
    config.data.train = "folder:/tmp"
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[section] = value
    return config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model__image_size": 16}, "image_size=16 is below MobileNetV2's minimum 32; use >= 32"),
        ({"model__backbone": "MobilenetV2"}, "did you mean 'MobileNetV2'"),
        ({"model__pooling": "mean"}, "config.model.pooling='mean' must be 'avg' or 'max'"),
        ({"model__dropout": 1.0}, r"config.model.dropout=1.0 must be in \[0, 1\)"),
        ({"model__weights": "/nope.h5"}, "config.model.weights='/nope.h5' is not a file"),
        ({"data__train": "/data/train"}, "config.data.train='/data/train' is not a dataset spec"),
        ({"data__train": ""}, "config.data.train is empty"),
        ({"data__global_batch_size": 0}, "global_batch_size=0 must be >= 1"),
        ({"data__max_image_pixels": 0}, "config.data.max_image_pixels=0 must be >= 1"),
        ({"phase2__batchnorm": "on"}, "config.phase2.batchnorm='on' must be 'frozen' or 'train'"),
        ({"phase2__unfreeze_blocks": -2}, "unfreeze_blocks=-2 must be >= 0"),
        ({"phase1__learning_rate": 0.0}, "phase1.learning_rate=0.0 must be > 0"),
        ({"name": "my model"}, "config.name='my model' must be a folder name"),
        ({"data__augment": "blur"}, "unknown \\['blur'\\]"),
    ],
)
def test_validate_names_field_and_fix(changes, message):
    with pytest.raises(UserError, match=message):
        config_lib.validate(_tiny(**changes), "train")


def test_alpha_only_for_mobilenets():
    config = _tiny(model__backbone="ResNet50")
    with pytest.raises(UserError, match="ResNet50 has no width multiplier"):
        config_lib.validate(config, "train")


def test_save_and_load_round_trip(tmp_path):
    config = _tiny(data__classes="cat,dog", data__examples_per_class=3)
    config_lib.save(config, tmp_path / "config.json")
    loaded = config_lib.load(tmp_path / "config.json")
    assert config_lib.to_dict(loaded) == config_lib.to_dict(config)
    with pytest.raises(UserError, match="not found"):
        config_lib.load(tmp_path / "missing.json")


def test_scratch_baseline_trains_everything_from_random_init():
    config = _load(REPO / "configs" / "fashion_mnist.py")
    scratch = config_lib.scratch_baseline(config)
    assert scratch.model.weights == "" and scratch.phase1.epochs == 0
    assert scratch.phase2.epochs == config.phase1.epochs + config.phase2.epochs
    assert scratch.phase2.unfreeze_blocks == -1 and scratch.phase2.batchnorm == "train"
    assert scratch.export.dir == "" and config.export.dir == "saved_models"


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_every_config_runs_its_smoke_variant(path, image_folders, tmp_path):
    """Each config's own recipe (backbone, optimizer, phases) on local images, shrunk."""
    from sft_tf import backbones, train

    config = _load(path)
    config.data.train = f"folder:{image_folders['train']}"
    config.data.test = f"folder:{image_folders['test']}"
    if config.data.validation:
        config.data.validation = "split:0.25"
    config.data.global_batch_size = 8
    config.data.classes = None
    config.data.examples_per_class = None
    config.model.weights = ""  # offline: no ImageNet download
    config.model.image_size = max(32, backbones.get(config.model.backbone).min_size)
    config.phase1.epochs = min(config.phase1.epochs, 1)
    config.phase2.epochs = min(config.phase2.epochs, 1)
    for phase in (config.phase1, config.phase2):
        phase.warmup_epochs = min(phase.warmup_epochs, phase.epochs)
    config.export.dir = str(tmp_path / "saved_models")
    config_lib.validate(config, "train")
    metrics = train.run(config, tmp_path / "run")
    assert metrics["export"].endswith(f"{config.name}/1")


CONFIG_FILE_MISTAKES = {
    "syntax error": ("def get_config(:\n", "syntax error in {path} line 1"),
    "raises": (
        "def get_config():\n    raise RuntimeError('boom')\n",
        "{path} line 2 raised RuntimeError: boom",
    ),
    "no get_config": ("x = 1\n", "{path} defines no get_config()"),
    "returns None": ("def get_config():\n    return None\n", "returned NoneType, not a ConfigDict"),
}


@pytest.mark.parametrize("mistake", sorted(CONFIG_FILE_MISTAKES))
def test_config_file_mistakes_name_the_file(mistake, tmp_path):
    source, message = CONFIG_FILE_MISTAKES[mistake]
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(UserError) as raised:
        config_lib.check_config_file(str(path))
    assert message.format(path=path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_config_file_suggests_the_closest_name():
    with pytest.raises(UserError, match=r"no such file .*tny\.py; did you mean .*tiny\.py\?"):
        config_lib.check_config_file(str(REPO / "configs" / "tny.py"))
    config_lib.check_config_file(str(REPO / "configs" / "tiny.py"))  # a good file passes


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("phase1.learning_rate", float("nan"), "must be a finite number"),
        ("phase2.l2sp", float("inf"), "must be a finite number"),
        ("phase2.epochs", 10**20, "is too large"),
        ("seed", 2**40, "is too large"),
        ("phase1.epochs", 10_001, "must be between 0 and 10000"),
        ("model.image_size", 100_000, "is above 1024"),
    ],
)
def test_values_that_would_crash_later_are_refused(field, value, message):
    config = _load(REPO / "configs" / "tiny.py")
    config.data.train = "folder:/data/train"
    section, name = field.rsplit(".", 1) if "." in field else ("", field)
    (config[section] if section else config)[name] = value
    with pytest.raises(UserError, match=f"config.{field}=.*{message}"):
        config_lib.validate(config, "train")
