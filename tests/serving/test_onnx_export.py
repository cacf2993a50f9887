"""The ONNX extra: a missing package is a one-line error naming the install command."""

import pytest

from sft_tf.config import validation
from sft_tf.errors import UserError
from sft_tf.serving import onnx_export
from tests.helpers import tiny_config


def test_missing_onnx_packages_name_the_extra(monkeypatch):
    onnx_export.check_installed("config.export.onnx=true")  # the test environment has them
    monkeypatch.setitem(onnx_export.ONNX_PACKAGES, "sft_tf_no_such_module", "no-such-package")
    with pytest.raises(UserError, match=r"needs no-such-package: pip install 'sft_tf\[onnx\]'"):
        onnx_export.check_installed("config.export.onnx=true")
    config = tiny_config(export__onnx=True)
    with pytest.raises(UserError, match="config.export.onnx=true needs no-such-package"):
        validation.validate(config, "train")
