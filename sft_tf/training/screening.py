"""The up-front screening of a run's splits: every image decoded once (`scan_lib.scan_images`),
undecodable files listed or refused, the audit's problems refused, leakage between splits
warned about or dropped, and, where the pixel cache would hold them anyway, the decoded pixels
kept for the pipelines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sft_tf.data import audit as audit_lib
from sft_tf.data import caches
from sft_tf.data import examples as examples_lib
from sft_tf.data import scan as scan_lib
from sft_tf.errors import UserError
from sft_tf.log import say


def screen_splits(
    splits: dict[str, examples_lib.Examples],
    on_bad_image: str,
    max_pixels: int,
    on_leakage: str = "fail",
    keep: Callable[[examples_lib.Examples], tuple[int, str] | None] | None = None,
    image_size: int | None = None,
) -> dict[str, examples_lib.Examples]:
    """Decodes every image once; drops and lists undecodable ones, or stops (on_bad_image=fail).

    Also stops on what the audit calls problems (an empty class, one class, and with
    on_leakage=fail test images that are also training images, identical or near-duplicates);
    on_leakage=drop removes the training copies instead, warn only says so. keep: split ->
    (image size, resize method) of the decoded pixels to keep for its pipelines, or None
    (`decoded_to_keep`). image_size: the model's, for which large JPEGs decode scaled down
    (`scan_lib.scan_images`); None for the stored size.
    """
    scans, splits = scan_splits(splits, max_pixels, keep, image_size)
    near = audit_lib.near_duplicate_pairs(splits, scans, within=False)
    report = audit_lib.audit(splits, scans, on_leakage, near)
    bad = [
        f"  {name}: {b['where']}: {b['reason']}"
        for name, s in report["splits"].items()
        for b in s["bad_files"]
    ]
    if bad and on_bad_image == "fail":
        raise UserError(
            f"{len(bad)} image(s) cannot be decoded (config.data.on_bad_image='fail'); fix or "
            "remove them, or set it to 'skip':\n" + "\n".join(bad)
        )
    if bad:
        say(f"Skipping {len(bad)} image(s) that cannot be decoded:\n" + "\n".join(bad))
    if report["problems"]:
        problems = report["problems"]
        more = (
            f" (and {len(problems) - 1} more; sft-tf audit lists them)" if len(problems) > 1 else ""
        )
        raise UserError(f"the data is not usable: {problems[0].strip()}{more}")
    _warn_leakage(report)
    if on_leakage == "drop":
        return _drop_leaked(splits, scans, near)
    return {name: scan_lib.drop_bad(split, scans[name]) for name, split in splits.items()}


def scan_splits(
    splits: dict[str, examples_lib.Examples],
    max_pixels: int,
    keep: Callable[[examples_lib.Examples], tuple[int, str] | None] | None = None,
    image_size: int | None = None,
) -> tuple[dict[str, scan_lib.ImageScan], dict[str, examples_lib.Examples]]:
    """Each split scanned once (`scan_lib.scan_images`; keep and image_size as for
    `screen_splits`), and the splits carrying the pixels their scans kept (undecodable
    examples still in: `scan_lib.drop_bad` takes them out)."""
    scans = {
        name: scan_lib.scan_images(split, max_pixels, keep(split) if keep else None, image_size)
        for name, split in splits.items()
    }
    return scans, {name: scan_lib.keep_decoded(s, scans[name]) for name, s in splits.items()}


def _warn_leakage(report: dict) -> None:
    for pair, leak in report["leakage"].items():
        if leak["count"]:
            say(f"Warning: {leak['count']} identical image(s) in {pair} (sft-tf audit lists them)")
    for key, near in report["near_duplicates"].items():
        if "/" in key and near["count"]:
            say(
                f"Warning: {near['count']} near-duplicate pair(s) across {key} "
                "(sft-tf audit lists them)"
            )


def _drop_leaked(splits, scans, near) -> dict[str, examples_lib.Examples]:
    """The decodable examples, minus (data.on_leakage=drop) each earlier split's images that
    have an identical or near-duplicate image in a later one: train's copies of validation or
    test images, validation's of test images. Says how many it dropped."""
    leaked = {name: set() for name in splits}
    for a, b in audit_lib.LEAKAGE_FAILS:
        if a not in splits or b not in splits:
            continue
        scan_a, later = scans[a], set(scans[b].digest[scans[b].ok].tolist())
        leaked[a] |= {int(i) for i in np.flatnonzero(scan_a.ok) if int(scan_a.digest[i]) in later}
        leaked[a] |= {p.a for p in near.get(f"{a}/{b}", [])}
    kept = {}
    for name, split in splits.items():
        ok = np.flatnonzero(scans[name].ok)
        kept[name] = split.take(np.asarray([i for i in ok if int(i) not in leaked[name]], np.int64))
        if leaked[name]:
            say(
                f"Dropped {len(leaked[name])} {name} image(s) that are also in a later split "
                "(validation, test), identical or near-duplicates (data.on_leakage=drop)"
            )
    if "train" in kept and leaked["train"]:
        _check_drop_left(splits["train"].take(np.flatnonzero(scans["train"].ok)), kept["train"])
    return kept


def _check_drop_left(before: examples_lib.Examples, after: examples_lib.Examples) -> None:
    """UserError when data.on_leakage=drop took every training image, or every one of a class
    (instead of a batch-size message later, or a class trained on nothing)."""
    counts = zip(before.class_names, before.counts(), after.counts())
    emptied = [f"{name!r} ({had})" for name, had, left in counts if had and not left]
    if len(after) and not emptied:
        return
    what = (
        f"all {len(before)} decodable training images"
        if not len(after)
        else f"every training image of class(es) {', '.join(emptied)}"
    )
    raise UserError(
        f"config.data.on_leakage='drop' removed {what}: each is identical to, or a near-"
        "duplicate of, a validation or test image; check that the training and the "
        "validation/test specs are not the same data, or set config.data.on_leakage=warn"
    )


def keeps_decoded(
    examples: examples_lib.Examples, image_size: int, mode: str, budget_mb: int
) -> bool:
    """Whether the scan keeps a split decoded for its pipelines: files and records whose pixels
    the pixel cache (data.cache `mode`) would hold in memory anyway, and twice over within
    `budget_mb` (a subset taken while the whole split exists, such as the validation hold-out
    or the few-shot sample, copies its rows; larger splits fill the pipeline's cache on its
    first pass instead)."""
    in_memory = caches.cache_mode(examples, image_size, mode, budget_mb) == "memory"
    twice_fits = 2 * caches.pixels_mb(examples, image_size) <= budget_mb
    return examples.pixels is None and in_memory and twice_fits


def decoded_to_keep(config) -> Callable[[examples_lib.Examples], tuple[int, str] | None]:
    """`screen_splits`' keep for a run (`keeps_decoded`). The pipelines of a kept split read
    its pixels, so each image is decoded once per run, not once by the scan and again by every
    pipeline's first pass (training, the phase-1 feature pass, evaluations)."""
    d, size = config.data, config.model.image_size

    def keep(split: examples_lib.Examples) -> tuple[int, str] | None:
        kept = keeps_decoded(split, size, d.cache, d.cache_memory_mb)
        return (size, d.resize_method) if kept else None

    return keep
