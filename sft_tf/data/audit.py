"""Dataset audit: what is in each split, what is broken, and what leaks between splits.

Built on `scan_lib.scan_images` (every image decoded once): examples per class, undecodable files
with reasons, grayscale/alpha/CMYK counts, the image size range, exact duplicates (same encoded
bytes, or same pixels for in-memory data) within a split and across splits, files listed under
two classes (links), and the class imbalance ratio. `sft-tf audit` prints and writes it all;
`sft-tf train` runs the same scan up front, because finding undecodable files needs the decode
anyway, and stops on the problems.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping

import numpy as np

from sft_tf.data import examples as examples_lib
from sft_tf.data import near_duplicates as near_lib
from sft_tf.data import scan as scan_lib

# Splits whose shared images inflate a score (the test score; the validation score that early
# stopping, thresholds and calibration go by): `problems` fails on these (data.on_leakage=fail),
# for identical images and near-duplicates alike.
LEAKAGE_FAILS = (("train", "validation"), ("train", "test"), ("validation", "test"))
LEAKAGE_POLICIES = ("fail", "warn", "drop")
# Duplicate groups and leaked pairs listed in full per split (the counts are always exact).
MAX_LISTED = 50
# Largest over smallest training class from which `train` warns about class imbalance.
IMBALANCE_WARNING = 10.0


def _duplicate_groups(
    examples: examples_lib.Examples, scan: scan_lib.ImageScan
) -> list[list[dict]]:
    groups: dict[int, list[int]] = {}
    for i in np.flatnonzero(scan.ok):
        groups.setdefault(int(scan.digest[i]), []).append(int(i))
    return [
        [{"where": examples.where(i), "class": examples.label_names(i)} for i in members]
        for members in groups.values()
        if len(members) > 1
    ]


def same_file_classes(examples: examples_lib.Examples) -> list[dict]:
    """Files of a single-label split listed under two classes: one file (same device and
    inode, so file links, hard links and folder links alike) reached as two examples of
    different classes, which training would learn both ways. Local files only; a file that
    cannot be read is the scan's to report.

    Returns:
      [{"file": its real path, "a": first example's path, "class_a", "b", "class_b"}]: each
      later example of another class than the first one reaching the file.
    """
    if examples.paths is None or examples.multi_label:
        return []
    first: dict[tuple[int, int], int] = {}
    found = []
    for i, path in enumerate(examples.paths):
        if "://" in path:  # buckets have no links
            continue
        try:
            stat = os.stat(path)  # follows links: a link and its target are one file
        except OSError:  # missing: the scan reports it
            continue
        j = first.setdefault((stat.st_dev, stat.st_ino), i)
        if examples.labels[j] != examples.labels[i]:
            found.append(
                {
                    "file": os.path.realpath(path),
                    "a": str(examples.paths[j]),
                    "class_a": examples.label_names(j),
                    "b": str(path),
                    "class_b": examples.label_names(i),
                }
            )
    return found


def imbalance_warning(examples: examples_lib.Examples, threshold: float) -> str:
    """A warning when the largest class has `threshold` times the examples of the smallest or
    more (accuracy then rewards answering the large class), else "". Single-label only: a
    multi-label set's labels are common or rare by nature, and each is scored on its own."""
    counts = examples.counts()
    if examples.multi_label or len(counts) < 2 or not counts.min():
        return ""
    big, small = int(np.argmax(counts)), int(np.argmin(counts))
    ratio = counts[big] / counts[small]
    if ratio < threshold:
        return ""
    names = examples.class_names
    return (
        f"Warning: the training split is imbalanced: class {names[big]!r} has {counts[big]} "
        f"images, {ratio:.0f} times the {counts[small]} of class {names[small]!r}, so accuracy "
        f"can look good while {names[small]!r} is never predicted"
    )


def split_summary(examples: examples_lib.Examples, scan: scan_lib.ImageScan) -> dict:
    """The audit of one split (JSON-able)."""
    ok = scan.ok
    counts = examples.take(np.flatnonzero(ok)).counts()
    duplicates = _duplicate_groups(examples, scan)
    same_file = same_file_classes(examples)
    nonzero = counts[counts > 0]
    return {
        "origin": examples.origin,
        "multi_label": examples.multi_label,
        "examples": len(examples),
        "decodable": int(ok.sum()),
        "per_class": dict(zip(examples.class_names, counts.tolist())),
        "empty_classes": [n for n, c in zip(examples.class_names, counts) if c == 0],
        # Largest over smallest class; None when a class is empty (the ratio is infinite).
        "imbalance_ratio": (
            round(float(nonzero.max() / nonzero.min()), 3)
            if len(nonzero) == len(counts) and len(counts)
            else None
        ),
        "bad_files": [{"where": w, "reason": r} for w, r in scan.bad(examples)],
        # What listing the split left out (ignored files, folder links that loop); printed
        # when the split is listed, so describe() does not repeat them.
        "ignored": list(examples.notes),
        "grayscale": int((ok & np.isin(scan.channels, (1, 2))).sum()),
        "alpha": int((ok & np.isin(scan.channels, (2, 4))).sum()),
        "cmyk": int((ok & scan.cmyk).sum()),
        "height": [int(scan.height[ok].min()), int(scan.height[ok].max())] if ok.any() else None,
        "width": [int(scan.width[ok].min()), int(scan.width[ok].max())] if ok.any() else None,
        "duplicate_groups": len(duplicates),
        "duplicate_images": sum(len(g) - 1 for g in duplicates),
        "duplicates": duplicates[:MAX_LISTED],
        "same_file_count": len(same_file),
        "same_file_classes": same_file[:MAX_LISTED],
    }


def leakage(
    a: examples_lib.Examples,
    scan_a: scan_lib.ImageScan,
    b: examples_lib.Examples,
    scan_b: scan_lib.ImageScan,
) -> list[dict]:
    """Pairs of identical images, one in each split."""
    first: dict[int, int] = {}
    for i in np.flatnonzero(scan_a.ok):
        first.setdefault(int(scan_a.digest[i]), int(i))
    return [
        {"a": a.where(first[int(scan_b.digest[j])]), "b": b.where(int(j))}
        for j in np.flatnonzero(scan_b.ok)
        if int(scan_b.digest[j]) in first
    ]


def near_duplicate_pairs(
    splits: Mapping[str, examples_lib.Examples],
    scans: Mapping[str, scan_lib.ImageScan],
    within: bool = True,
) -> dict[str, list[near_lib.Pair]]:
    """Near-duplicates (not byte-identical) within each split ("train"; only if `within`: the
    all-pairs search of a large split is most of the cost, and only the audit reports them)
    and across two ("train/test"), as indices into the splits."""
    same = [(n, n) for n in splits] if within else []
    searches = same + list(itertools.combinations(splits, 2))
    compared = {name for pair in searches for name in pair}  # a lone split: nothing to hash
    ok = {name: np.flatnonzero(scans[name].ok) for name in compared}
    hashes = {n: near_lib.perceptual_hashes(scans[n].thumbnails[ok[n]]) for n in compared}
    found = {}
    for a, b in searches:
        pairs = near_lib.find_pairs(
            hashes[a],
            scans[a].thumbnails[ok[a]],
            None if a == b else hashes[b],
            None if a == b else scans[b].thumbnails[ok[b]],
        )
        digest_a, digest_b = scans[a].digest[ok[a]], scans[b].digest[ok[b]]
        found[a if a == b else f"{a}/{b}"] = [
            near_lib.Pair(int(ok[a][p.a]), int(ok[b][p.b]), p.hash_distance, p.correlation)
            for p in pairs
            if digest_a[p.a] != digest_b[p.b]  # identical ones are reported as duplicates
        ]
    return found


def _near_summary(splits, pairs: dict[str, list[near_lib.Pair]]) -> dict:
    summary = {}
    for key, found in pairs.items():
        a, _, b = key.partition("/")
        listed = [
            {
                "a": splits[a].where(p.a),
                "b": splits[b or a].where(p.b),
                "hash_distance": p.hash_distance,
                "correlation": round(p.correlation, 4),
            }
            for p in found[:MAX_LISTED]
        ]
        summary[key] = {"count": len(found), "pairs": listed}
    return summary


def audit(
    splits: Mapping[str, examples_lib.Examples],
    scans: Mapping[str, scan_lib.ImageScan],
    on_leakage: str = "fail",
    near: dict[str, list[near_lib.Pair]] | None = None,
) -> dict:
    """The whole audit: one summary per split, cross-split duplicates, and the problems.

    Args:
      splits: {"train": ..., "validation": ..., "test": ...}, any present subset.
      scans: `scan_lib.scan_images` of each.
      on_leakage: "fail" makes images shared by train and test (identical or near-duplicate)
        a problem; "warn" and "drop" leave that to the caller.
      near: `near_duplicate_pairs` of the splits, if already computed.

    Returns:
      A JSON-able dict; `report["problems"]` lists what should stop a run.
    """
    report: dict = {"splits": {n: split_summary(splits[n], scans[n]) for n in splits}}
    report["leakage"] = {}
    for a, b in itertools.combinations(splits, 2):
        pairs = leakage(splits[a], scans[a], splits[b], scans[b])
        report["leakage"][f"{a}/{b}"] = {"count": len(pairs), "pairs": pairs[:MAX_LISTED]}
    near = near_duplicate_pairs(splits, scans) if near is None else near
    report["near_duplicates"] = _near_summary(splits, near)
    report["problems"] = problems(report, on_leakage)
    return report


def problems(report: dict, on_leakage: str = "fail") -> list[str]:
    """What makes the data unfit to train or to score on: empty class, one class, a file
    under two classes, leakage."""
    found = []
    for name, s in report["splits"].items():
        # A multi-label test set may lack a rare label (its scores then say so); training on a
        # label with no positive example cannot work.
        if s["empty_classes"] and (name == "train" or not s.get("multi_label")):
            found.append(
                f"{name}: no decodable images for class(es) {s['empty_classes']} ({s['origin']})"
            )
        if s.get("same_file_count"):
            same, count = s["same_file_classes"][0], s["same_file_count"]
            real = f", both {same['file']}" if same["file"] not in (same["a"], same["b"]) else ""
            found.append(
                f"{name}: {same['b']} (class {same['class_b']!r}) is the same file as "
                f"{same['a']} (class {same['class_a']!r}{real})"
                + (f" ({count} files listed under two classes)" if count > 1 else "")
                + "; an image has one class: keep it in one (delete the link or hard link, or "
                "the CSV row, of the wrong class)"
            )
        if name == "train" and len(s["per_class"]) < 2 and not s.get("multi_label"):
            found.append(
                f"train: only one class {list(s['per_class'])} ({s['origin']}); a classifier "
                "needs two or more"
            )
    if on_leakage != "fail":
        return found
    fix = "remove them from one side, or set data.on_leakage=drop (or warn)"
    for a, b in LEAKAGE_FAILS:
        leak = report["leakage"].get(f"{a}/{b}")
        if leak and leak["count"]:
            example = leak["pairs"][0]
            found.append(
                f"{leak['count']} {b} image(s) also in {a} (e.g. {example['b']} = "
                f"{example['a']}): the {b} score would be inflated; {fix}"
            )
        near = report.get("near_duplicates", {}).get(f"{a}/{b}")
        if near and near["count"]:
            example = near["pairs"][0]
            found.append(
                f"{near['count']} {b} image(s) are near-duplicates (resized, re-encoded or "
                f"brightened copies) of {a} images (e.g. {example['b']} ~ {example['a']}): "
                f"the {b} score would be inflated; {fix}"
            )
    return found


def describe(report: dict) -> list[str]:
    """The report as printable lines."""
    lines = []
    for name, s in report["splits"].items():
        size = (
            f"{s['height'][0]}-{s['height'][1]} x {s['width'][0]}-{s['width'][1]} px"
            if s["height"]
            else "no images"
        )
        lines.append(
            f"{name}: {s['decodable']}/{s['examples']} decodable from {s['origin']}; {size}; "
            f"grayscale {s['grayscale']}, alpha {s['alpha']}, CMYK {s['cmyk']}; "
            f"imbalance {s['imbalance_ratio']}; {s['duplicate_images']} exact duplicate(s)"
        )
        lines.append("  per class: " + ", ".join(f"{k} {v}" for k, v in s["per_class"].items()))
        for bad in s["bad_files"]:
            lines.append(f"  bad file {bad['where']}: {bad['reason']}")
        for same in s.get("same_file_classes", []):
            lines.append(
                f"  one file under two classes: {same['a']} ({same['class_a']}) = "
                f"{same['b']} ({same['class_b']})"
            )
        for group in s["duplicates"]:
            lines.append(
                "  same image: " + ", ".join(f"{d['where']} ({d['class']})" for d in group)
            )
    for pair, leak in report["leakage"].items():
        if leak["count"]:
            lines.append(f"{pair}: {leak['count']} image(s) in both")
    for key, near in report.get("near_duplicates", {}).items():
        where = f"across {key}" if "/" in key else f"within {key}"
        if near["count"]:
            lines.append(f"{near['count']} near-duplicate pair(s) {where}")
        for pair in near["pairs"][:3]:
            lines.append(f"  {pair['a']} ~ {pair['b']} (hash distance {pair['hash_distance']})")
    for problem in report["problems"]:
        lines.append(f"PROBLEM {problem}")
    return lines
