"""Class names in the report's figures whatever their script.

matplotlib draws text in DejaVu Sans, which has no Chinese, Japanese or Korean glyphs: such a
name becomes a row of boxes. `figure_labels` looks for an installed font that has the missing
characters and adds it as a fallback (matplotlib >= 3.6 falls back along `font.family`);
when no installed font has them, figures number the classes instead ("#3") and the report's
markdown, which any viewer renders in the reader's own fonts, says which number is which.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

DEFAULT_FAMILY = "DejaVu Sans"
# Fonts that claim every character but draw each as a placeholder box.
_PLACEHOLDER_FONTS = ("Last Resort",)


@functools.cache
def _charmap(path: str) -> frozenset[int]:
    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError):  # a broken or unsupported font file
        return frozenset()


@functools.cache
def _covering_family(missing: frozenset[int]) -> str | None:
    """The first installed font family (by name) that has every character in `missing`.

    Checked on the file matplotlib draws a family name with (`findfont`), not on each file
    of the family: two copies of one family (matplotlib's bundled DejaVu Sans and a newer
    one in /usr/share/fonts) can differ in coverage, and only the name reaches matplotlib.
    """
    for name in sorted({entry.name for entry in font_manager.fontManager.ttflist}):
        if name.startswith(_PLACEHOLDER_FONTS):
            continue
        if missing <= _charmap(font_manager.findfont(name, fallback_to_default=False)):
            return name
    return None


def figure_labels(names: Sequence[str]) -> tuple[list[str], dict]:
    """How figures should print `names`, and the matplotlib settings that draw them.

    Returns:
      (labels, rc): labels are the names themselves when the default font, or with an
      installed font as fallback, draws every character (rc then selects that font family
      list; use it with `matplotlib.pyplot.rc_context`), else "#0", "#1", ... and rc is empty.
    """
    needed = {ord(ch) for name in names for ch in name if ch.isprintable() and not ch.isspace()}
    missing = frozenset(needed - _charmap(font_manager.findfont(DEFAULT_FAMILY)))
    if not missing:
        return list(names), {}
    family = _covering_family(missing)
    if family is None:
        return [f"#{i}" for i in range(len(names))], {}
    return list(names), {"font.family": [DEFAULT_FAMILY, family]}


def legend_line(names: Sequence[str], labels: Sequence[str]) -> str | None:
    """The markdown line that says which figure number is which class, when figures number them."""
    if list(labels) == list(names):
        return None
    pairs = ", ".join(f"{label} = {name}" for label, name in zip(labels, names))
    return f"No installed font draws these class names, so the figures number them: {pairs}."
