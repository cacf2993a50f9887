"""sft_tf/evaluation/fonts.py: class names the report's figures can draw are kept (with a
fallback font when DejaVu Sans lacks some of their characters), the others are numbered and
the report's legend line says which number is which. Judged by drawing them with matplotlib:
a character no font of the family list has is a "Glyph ... missing" warning."""

import warnings

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

from sft_tf.evaluation import fonts


def _missing_glyph_warnings(text: str, rc: dict) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with plt.rc_context(rc):
            figure, axes = plt.subplots()
            axes.set_title(text)
            figure.canvas.draw()
            plt.close(figure)
    return [str(w.message) for w in caught if "missing from font" in str(w.message)]


def _default_has(character: str) -> bool:
    charmap = FT2Font(font_manager.findfont(fonts.DEFAULT_FAMILY)).get_charmap()
    return ord(character) in charmap


def _installed_has(character: str) -> bool:
    return any(
        ord(character) in FT2Font(f.fname).get_charmap()
        for f in font_manager.fontManager.ttflist
        if not f.name.startswith("Last Resort")
    )


def test_names_the_default_font_draws_are_kept_as_they_are():
    names = ["cat", "Ankle boot", "T-shirt/top", "café", "Ωmega"]
    assert fonts.figure_labels(names) == (names, {})
    assert fonts.legend_line(names, names) is None


def test_names_no_installed_font_draws_are_numbered_and_the_legend_says_which_is_which():
    # U+10E60 RUMI DIGIT ONE: a script no font here draws (checked, so the test stays true
    # on a machine that has one).
    rumi = "\U00010e60"
    if _installed_has(rumi):
        pytest.skip("an installed font draws Rumi numerals")
    names = ["cat", f"dog {rumi}", "fox"]
    labels, rc = fonts.figure_labels(names)
    assert (labels, rc) == (["#0", "#1", "#2"], {})
    assert fonts.legend_line(names, labels) == (
        "No installed font draws these class names, so the figures number them: "
        f"#0 = cat, #1 = dog {rumi}, #2 = fox."
    )


@pytest.mark.parametrize(
    "character",
    [
        "\u2312",  # ARC (DejaVu Sans Mono)
        "\U0001d5d4",  # MATHEMATICAL SANS-SERIF BOLD CAPITAL A
        "\u4e2d",  # CJK: numbered here unless a CJK font is installed
        "\u037f",  # GREEK CAPITAL LETTER YOT: in /usr/share/fonts' DejaVu Sans, not matplotlib's
    ],
)
def test_names_kept_are_drawn_without_a_missing_glyph(character):
    """Whatever figure_labels keeps, its rc draws; numbered labels always draw."""
    name = f"class {character}"
    labels, rc = fonts.figure_labels(["cat", name])
    assert not _missing_glyph_warnings(labels[1], rc)
    if labels[1] == name and not _default_has(character):
        assert rc["font.family"][0] == fonts.DEFAULT_FAMILY and len(rc["font.family"]) == 2


def test_a_fallback_family_is_added_after_the_default_when_one_has_the_characters():
    arc = "\u2312"
    if _default_has(arc) or not _installed_has(arc):
        pytest.skip("needs a font other than the default with U+2312 (DejaVu Sans Mono)")
    labels, rc = fonts.figure_labels(["cat", f"arc {arc}"])
    assert labels == ["cat", f"arc {arc}"]
    family = rc["font.family"][1]
    assert rc == {"font.family": [fonts.DEFAULT_FAMILY, family]}
    assert ord(arc) in FT2Font(font_manager.findfont(family)).get_charmap()
