"""The two phases: the head on a frozen base, then the top blocks opened at a lower rate.

Each phase compiles its trainee, restores an interrupted run's checkpoint into it when the run
stopped in that phase, and fits epoch after epoch from where it got to (a half-done epoch is a
fit of its remaining steps). Everything a phase needs and changes travels in one `Run`
(`sft_tf.training.run`); the record it advances changes only through `RunState`'s
transitions.
"""

from __future__ import annotations

import sys
import time

import keras
import ml_collections

from sft_tf import timing
from sft_tf.data import augment as augment_lib
from sft_tf.distribute import strategy as strategy_lib
from sft_tf.distribute import workers
from sft_tf.evaluation import learning
from sft_tf.log import say
from sft_tf.model import classifier, unfreeze
from sft_tf.training import cache_choice, cached_phase2, feature_store, head_cache, recipe
from sft_tf.training import callbacks as callbacks_lib
from sft_tf.training.finish import evaluate_test
from sft_tf.training.inputs import make_dataset, sample_weights, training_class_weights
from sft_tf.training.run import Run


def diverged_hint(config: ml_collections.ConfigDict, phase: str) -> str:
    """What to do after a non-finite loss in `phase`: a command that can work.

    The same command diverges again, and so does a resume at a lower rate
    (--allow_config_change) whenever the last checkpoint was saved at the step before the
    NaN: it holds the weights whose loss was the NaN (a step's loss is computed before its
    update). Measured on the tiny run: resumed from that checkpoint, even at 1e-4, the loss
    is NaN at the same step again. Starting over at a tenth of the rate is what works.
    """
    rate = config[phase].learning_rate
    hint = (
        f"{phase}.learning_rate={rate:g} is likely too high: rerun the same command with "
        f"--config.{phase}.learning_rate={rate / 10:g} --restart to train again from the start "
        "at a tenth of the rate (this run is moved aside; resuming it would start from weights "
        "the high rate may already have spoilt)"
    )
    policy = keras.mixed_precision.global_policy().name
    if policy.startswith("mixed"):
        hint += f"; under {policy}, --config.runtime.precision=float32 --restart may be the fix"
    return hint


def _callbacks(run: Run, phase: str, first_step: int) -> list[keras.callbacks.Callback]:
    # The callbacks save the whole model even when fit trains a part of it (`cached_phase2`).
    # The non-finite guard comes first: it must stop the step before anything is saved.
    return [
        callbacks_lib.StopOnNonFinite(phase, diverged_hint(run.config, phase), first_step),
        callbacks_lib.StopOnInterrupt(),
        callbacks_lib.TensorBoard(log_dir=str(run.workdir / "logs")),
        callbacks_lib.ProgressSaver(
            phase,
            run.state,
            run.checkpoints,
            run.config.runtime.checkpoint_every_steps,
            first_step,
        ),
    ]


def _restore(run: Run, phase: str, first_epoch: int) -> tuple[int, int]:
    """Restores the interrupted run's checkpoint when it stopped in `phase`.

    Returns:
      (epochs done, steps done of the next epoch) for `phase` to continue from.
    """
    epoch, step = run.started.position(phase, first_epoch)
    if run.started.phase != phase or run.started.checkpoint is None:
        return epoch, step
    run.checkpoints.restore(run.started.checkpoint, run.started.restores_optimizer())
    say(f"Resuming {phase} after {epoch} finished epoch(s) from {run.started.checkpoint}")
    if step:
        say(
            f"  the last checkpoint is from step {step} of epoch {epoch + 1}: that epoch continues "
            f"at step {step + 1} of {run.pipelines.steps}, with the batches it would have had"
        )
    return epoch, step


def _fit_phase(
    run: Run, phase: str, first_epoch: int, last_epoch: int, trainee=None, cached_inputs=None
) -> None:
    """Trains `phase` up to `last_epoch` (of the whole run) from where it got to.

    trainee: the part of the model that trains (default the whole); cached_inputs: () ->
    (training stream, validation batches) for it, called once the checkpoint is restored.
    """
    epoch, step = _restore(run, phase, first_epoch)
    run.test_predictions = run.test_thresholds = None  # the weights change from here
    trainee = trainee or run.model
    stream, val_ds = run.pipelines.train_input, run.pipelines.val_ds
    if cached_inputs is not None and epoch < last_epoch:
        stream, val_ds = cached_inputs()
    while epoch < last_epoch:
        # A resumed, half-done epoch is a fit of its remaining steps; then the rest.
        until = epoch + 1 if step else last_epoch
        fit(
            trainee,
            stream((epoch, step), until),
            val_ds,
            _callbacks(run, phase, step) + recipe.early_stopping(run.config[phase], val_ds),
            total_epochs(run.config),
            initial_epoch=epoch,
            epochs=until,
            steps_per_epoch=run.pipelines.steps - step,
        )
        if trainee.stop_training:  # early stopping
            break
        epoch, step = until, 0


def _task(run: Run) -> dict:
    """compile_phase's options for the run's task: multi-label and its positive weights (listed
    once, with the input pipelines, by `inputs.train_input`)."""
    if not run.train.multi_label:
        return {}
    return {"multi_label": True, "positive_weights": training_class_weights(run.config, run.train)}


def _uses_head_cache(run: Run) -> bool:
    multi_worker = workers.input_pipelines(run.strategy) > 1
    augment = augment_lib.parse_augment(run.config.data.augment)
    mode = run.config.phase1.cache_features
    reason = head_cache.why_not(mode, augment, multi_worker)
    without = "Phase 1 runs the frozen base every step"
    return cache_choice.decide("phase1.cache_features", mode, reason, without)


def train_phase1(run: Run) -> None:
    """Phase 1: the new head on the frozen base (on cached features when it can), then the
    test metrics and a checkpoint that phase 2 starts from."""
    p1 = run.config.phase1
    run.base.trainable = False
    cached = _uses_head_cache(run)
    options = run.compile_options
    if cached and strategy_lib.multi_step_execution_works(run.strategy):
        # A head step is microseconds of work: run a whole epoch per call, or Python per-step
        # overhead is most of phase 1. (Not where Keras cannot: 2-replica Mirrored.)
        options = {**options, "steps_per_execution": run.pipelines.steps}
    with run.strategy.scope():
        # With cached features only the head (dropout + Dense, the same layers) trains.
        trainee = head_cache.head_of(run.model) if cached else run.model
        rate = recipe.phase_learning_rate(run.config, p1.learning_rate)
        recipe.compile_phase(
            trainee,
            rate,
            p1.warmup_epochs,
            p1.epochs,
            run.pipelines.steps,
            options,
            phase=p1,
            **_task(run),
        )
        if cached:
            # Only the head was compiled, but the end-of-phase checkpoint saves the whole
            # model, which needs an optimizer to track; phase 2 never restores this one.
            run.model.compile(optimizer=keras.optimizers.Adam(), loss=trainee.loss)
        run.checkpoints.track(run.model)
    say(f"Phase 1 (head only, base frozen): {classifier.describe_trainable(run.model)}")
    if cached:
        # Seconds of work: an interrupted cached phase 1 simply runs again.
        callbacks_lib.note_position("phase1 (the head on cached features)")
        guard = [
            callbacks_lib.StopOnNonFinite("phase 1", diverged_hint(run.config, "phase1")),
            callbacks_lib.TensorBoard(log_dir=str(run.workdir / "logs")),
        ]
        history = fit_head_on_features(
            run.config, run.model, trainee, run.train, run.validation, guard
        )
        run.state.record_history(history.history)
    else:
        _fit_phase(run, "phase1", 0, p1.epochs)
    losses = run.state.history.get("loss", [])
    results = {
        "epochs": p1.epochs,
        "epochs_run": len(losses),  # fewer than `epochs` after early stopping
        "test": evaluate_test(run),
    }
    run.state.finish_phase("phase1", results, epochs_done=p1.epochs)
    check_learning(run, "phase1", losses)
    run.checkpoints.save(run.state)


def train_phase2(run: Run) -> None:
    """Phase 2: the top blocks opened (whole blocks, BatchNorm as configured) at the lower
    learning rate, then the test metrics and the run's final checkpoint."""
    p1, p2 = run.config.phase1, run.config.phase2
    opened = unfreeze.unfreeze_top_blocks(
        run.base, run.config.model.backbone, p2.unfreeze_blocks, p2.batchnorm == "train"
    )
    finished = run.started.phase == "trained"
    with run.strategy.scope():
        # On cached activations only the part above the frozen blocks trains (the same layers).
        cut = None if finished else cached_phase2.plan(run.config, run.model, run.strategy, opened)
        trainee = cut.trainee if cut else run.model
        # A fresh optimizer: phase 1's moments belong to other variables and learning rate.
        recipe.compile_phase(
            trainee,
            recipe.phase_learning_rate(run.config, p2.learning_rate),
            p2.warmup_epochs,
            p2.epochs,
            run.pipelines.steps,
            run.compile_options,
            phase=p2,
            rate_scales=recipe.phase2_recipe(run.config, run.base, opened),
            **_task(run),
        )
        run.checkpoints.track(run.model, trainee)
    say(
        f"Phase 2 ({len(opened)} top blocks open: {', '.join(opened) or 'none'}; "
        f"BatchNorm {p2.batchnorm}): {classifier.describe_trainable(run.model)}"
    )
    if cut is not None:
        say(
            f"  on cached activations (phase2.cache_frozen): the layers below {cut.boundary} "
            "run once per image, not every step"
        )
    if finished:  # training had finished: only its weights are needed
        run.checkpoints.restore(run.started.checkpoint, with_optimizer=False)
        return
    cached_inputs = None
    if cut is not None:

        def cached_inputs():
            with timing.stage("phase 2 cache"):
                decoded = run.pipelines.decoded_pixels(run.train)
                return cached_phase2.inputs(
                    run.config, cut, run.train, run.validation, decoded, run.strategy
                )

    _fit_phase(run, "phase2", p1.epochs, p1.epochs + p2.epochs, trainee, cached_inputs)
    if p2.batchnorm == "train" and p2.recalibration_batches:
        batches = make_dataset(run.config, run.train, training=True, augment=False)
        used = unfreeze.recalibrate_batchnorm(run.model, batches, p2.recalibration_batches)
        say(f"Re-estimated BatchNorm statistics on {used} training batches")
    results = {"epochs": p2.epochs, "open_blocks": opened, "test": evaluate_test(run)}
    run.state.finish_phase("phase2", results, epochs_done=p1.epochs + p2.epochs)
    phase1_epochs = run.state.metrics.get("phase1", {}).get("epochs_run", p1.epochs)
    check_learning(run, "phase2", run.state.history.get("loss", [])[phase1_epochs:])
    run.checkpoints.save(run.state)


def finish_phase1_only(run: Run) -> None:
    """phase2.epochs=0: phase 1's last checkpoint holds the trained model."""
    if run.started.phase != "phase1" and run.started.checkpoint:  # trained by an earlier process
        run.checkpoints.restore(run.started.checkpoint, with_optimizer=False)
    if run.state.phase != "trained":
        run.state.trained_without_phase2()
        run.state.save(run.workdir)


def check_learning(run: Run, phase: str, losses: list[float]) -> None:
    """Warns (log and metrics.json "warnings") when `phase` seems to have learned nothing: its
    test (else validation) accuracy within noise of the majority class, or a flat loss."""
    test = run.state.metrics[phase]["test"] or {}
    found = [learning.loss_warning(phase, losses)]
    if "accuracy" in test:
        found.append(learning.accuracy_warning(phase, "test", test["accuracy"], run.test.labels))
    elif run.validation is not None and run.state.history.get("val_accuracy"):
        accuracy = run.state.history["val_accuracy"][-1]
        found.append(
            learning.accuracy_warning(phase, "validation", accuracy, run.validation.labels)
        )
    if any(found) and not run.state.metrics.get("warnings"):  # the advice once a run
        m, p2 = run.config.model, run.config.phase2
        random_base = learning.random_frozen_base(m.weights, p2.unfreeze_blocks, p2.batchnorm)
        found.append(f"what to try: {learning.hint(random_base)}")
    for warning in filter(None, found):
        say(f"Warning: {warning}")
        run.state.warn(warning)


def fit_head_on_features(
    config, model: keras.Model, head: keras.Model, train, validation, callbacks
) -> keras.callbacks.History:
    """Phase 1 on cached features: the frozen base runs once per image instead of every epoch.

    The feature batches come in the same seeded order as the image pipeline's, so the head gets
    the same updates as from `fit` on images (tests/scenarios/test_input_pipeline.py checks).
    """
    batch = config.data.global_batch_size
    start = time.perf_counter()
    with timing.stage("phase 1 features"):
        train_f, val_f = _feature_datasets(config, model, train, validation)
    say(
        f"Phase 1 on cached features (phase1.cache_features): the frozen base ran once over "
        f"the data in {time.perf_counter() - start:.1f} s"
    )
    # No checkpoints here: they hold the whole model and its optimizer, and the
    # head-only fit is seconds of work that simply runs again after an interruption.
    head_callbacks = [*callbacks, *recipe.early_stopping(config.phase1, val_f)]
    return fit(
        head,
        train_f,
        val_f,
        head_callbacks,
        total_epochs(config),
        epochs=config.phase1.epochs,
        steps_per_epoch=len(train) // batch,
    )


def _feature_datasets(config, model, train, validation) -> tuple:
    """Phase 1's training and validation batches of pooled features (`fit_head_on_features`)."""
    batch = config.data.global_batch_size
    num_classes = len(train.class_names)
    train_f = head_cache.feature_dataset(
        feature_store.pooled_features(config, model, train),
        train.labels,
        batch,
        training=True,
        seed=config.seed,
        num_classes=num_classes,
        class_weights=sample_weights(config, train),
        resample=config.data.resample,
        epochs=config.phase1.epochs,
    )
    val_f = None
    if validation is not None:
        val_f = head_cache.feature_dataset(
            feature_store.pooled_features(config, model, validation),
            validation.labels,
            batch,
            training=False,
            num_classes=num_classes,
        )
    return train_f, val_f


def total_epochs(config) -> int:
    """The run's epochs over both phases: what the console counts to."""
    return config.phase1.epochs + config.phase2.epochs


def fit(model, train_ds, val_ds, callbacks, total: int, **epochs) -> keras.callbacks.History:
    """model.fit as every phase calls it; `total`: the epochs of the whole run."""
    # Progress bars on a terminal, one line per epoch in logs (Keras redraws its bar even when
    # stdout is a file). The dataset shuffles itself; Keras cannot shuffle a tf.data set.
    return model.fit(
        train_ds,
        validation_data=val_ds,
        callbacks=[*callbacks, callbacks_lib.RunProgress(total)],
        shuffle=False,
        verbose=1 if sys.stdout.isatty() else 2,
        **epochs,
    )
