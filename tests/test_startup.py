"""The CLI's start-up: TensorFlow and Keras imported quietly, without the libraries they would
load for pieces sft_tf never uses."""

from tests.helpers import fresh_python

PROBE = (
    "import sys\n"
    "from sft_tf import startup\n"
    "startup.import_tensorflow_quietly()\n"
    "print(sorted(set(startup.UNUSED_AT_START_UP) & set(sys.modules)))\n"
    # Hidden only during the import: the audit, the multi-label metrics and the report import
    # them afterwards as usual.
    "from cleanlab.filter import find_label_issues\n"
    "from sft_tf.evaluation import multilabel\n"
    "import numpy as np\n"
    "scores = multilabel.multilabel_metrics(np.array([[0.9, 0.2]]), np.array([[1, 0]]), 'ab')\n"
    "print(scores['mean_average_precision'])\n"
    "import matplotlib.pyplot, pandas, scipy.sparse, IPython\n"
    "print(matplotlib.pyplot.figure is not None)\n"
)


def test_tensorflow_loads_without_unused_libraries_which_still_import_afterwards():
    result = fresh_python(PROBE)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[]"  # none of them loaded with TensorFlow and Keras
    assert lines[1] == "1.0"  # average precision: scikit-learn's, imported when needed
    assert lines[2] == "True"
    assert "oneDNN" not in result.stderr  # TensorFlow's start-up chatter stays muted
