"""The CLI's start-up: TensorFlow and Keras imported quietly, without scikit-learn."""

import subprocess
import sys

from tests.helpers import REPO

PROBE = (
    "import sys\n"
    "from sft_tf import startup\n"
    "startup.import_tensorflow_quietly()\n"
    "print('sklearn' in sys.modules)\n"
    # Hidden only during the import: the audit's and the multi-label metrics' imports work.
    "from cleanlab.filter import find_label_issues\n"
    "from sft_tf.evaluation import multilabel\n"
    "import numpy as np\n"
    "scores = multilabel.multilabel_metrics(np.array([[0.9, 0.2]]), np.array([[1, 0]]), 'ab')\n"
    "print(scores['mean_average_precision'])\n"
)


def test_tensorflow_loads_without_sklearn_which_still_imports_afterwards():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "False"  # Keras's scikit-learn wrappers were not loaded
    assert lines[1] == "1.0"  # average precision: scikit-learn's, imported when needed
    assert "oneDNN" not in result.stderr  # TensorFlow's start-up chatter stays muted
