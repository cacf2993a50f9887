"""What a workdir holds: the files `train` and `pretrain` write and the other commands read.

config.json          the resolved config (sft_tf.config.files.save)
labels.txt           the class names, one per line, in output order
state.json           where the run is (sft_tf.training.state.RunState), checkpoints/ beside
model.weights.h5     the whole model's weights, written when training ends (sft_tf.training.trained)
history.csv/.json    one row per epoch of both phases; metrics.json, report/ at the end
backbone.weights.h5  `pretrain`'s trained base, with a .json sidecar
.lock                held by the process working here (sft_tf.lock)
"""

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.txt"
WEIGHTS_FILE = "model.weights.h5"
BACKBONE_FILE = "backbone.weights.h5"
