"""The one rule both phases' caches follow: auto, on and off against a reason."""

import pytest

from sft_tf.errors import UserError
from sft_tf.training import cache_choice

WITHOUT = "Phase 2 runs the whole base every step"


@pytest.mark.parametrize("mode", cache_choice.MODES)
def test_without_a_reason_only_off_does_not_cache(mode, capsys):
    assert cache_choice.decide("phase2.cache_frozen", mode, None, WITHOUT) is (mode != "off")
    assert capsys.readouterr().out == ""


def test_auto_with_a_reason_falls_back_and_says_why(capsys):
    assert not cache_choice.decide("phase2.cache_frozen", "auto", "because", WITHOUT)
    assert capsys.readouterr().out == f"{WITHOUT} (phase2.cache_frozen=auto): because\n"


def test_off_with_a_reason_says_nothing(capsys):
    assert not cache_choice.decide("phase1.cache_features", "off", "because", WITHOUT)
    assert capsys.readouterr().out == ""


def test_on_with_a_reason_is_refused_naming_the_field_and_the_fix():
    with pytest.raises(UserError) as raised:
        cache_choice.decide("phase1.cache_features", "on", "because", WITHOUT)
    assert str(raised.value) == (
        "config.phase1.cache_features='on' cannot be used: because; set it to 'auto' or 'off'"
    )
