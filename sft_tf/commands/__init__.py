"""sft-tf: fine-tune a pretrained keras.applications image model and export it for TF Serving.

Usage: sft-tf COMMAND [--flags] [FILES...]

Commands:
  train      fine-tune in two phases (head, then top blocks), evaluate, export
             sft-tf train --config=configs/NAME.py --workdir=DIR [--config.a.b=VALUE ...]
  pretrain   train a backbone from scratch on a source task, for train to start from
             sft-tf pretrain --config=configs/NAME.py --workdir=DIR
  evaluate   test-set metrics of a workdir's model, or of an export
             sft-tf evaluate --workdir=DIR | --model=saved_models/NAME --config=configs/NAME.py
  export     (re)export a workdir's model as a new version (an interrupted run: its newest
             checkpoint)
             sft-tf export --workdir=DIR [--config.export.FIELD=VALUE ...]
  predict    top-k class names and scores for image files, from an export or a run's
             newest one
             sft-tf predict --model=saved_models/NAME [--version=N] | --workdir=DIR [--json]
             IMAGE...
  demo       offline demo: pretrain, fine-tune, from-scratch baseline, export, predict
             sft-tf demo --config=configs/fashion_mnist.py --workdir=runs/demo
  benchmark  size, accuracy and batch-1 latency of an export's variants, measured here
             sft-tf benchmark --model=saved_models/NAME [--version=N]
  audit      check every data split: counts, bad files, duplicates and near-duplicates,
             leakage, likely label errors, outliers; writes DIR/audit.json, audit.md and
             exclude_suggested.txt; exit status 1 on an empty class, one class or leakage
             sft-tf audit --config=configs/NAME.py --workdir=DIR

A command's flags, main config fields and an example: sft-tf COMMAND --help.
All flags: sft-tf --helpfull. Config fields and their meaning: sft_tf/config/schema.py.
Exit status: 0 done, 1 a file could not be written (or predict/audit found a problem),
2 bad input, 130 interrupted, 141 the reader of its output stopped (`| head`).
"""
