"""Whether a phase trains on cached inputs: one rule for `phase1.cache_features` (pooled
features, `head_cache`) and `phase2.cache_frozen` (boundary activations, `frozen_cache`).

Each cache module says why it cannot give the same training as the images would (its
`why_not`); this module turns that reason and the field's mode into the choice:

| mode | no reason | a reason |
| --- | --- | --- |
| `auto` | cached | not cached, and the log says why |
| `on` | cached | refused: the message names the field and the reason |
| `off` | not cached | not cached |
"""

from __future__ import annotations

from sft_tf.errors import UserError
from sft_tf.log import say

MODES = ("auto", "on", "off")


def decide(field: str, mode: str, reason: str | None, without: str) -> bool:
    """Whether to train on the cache.

    Args:
      field: the config field, e.g. "phase2.cache_frozen".
      mode: its value, one of MODES.
      reason: why the cache would not give the same training (None: it would).
      without: what the phase does instead, for the log, e.g. "Phase 2 runs the whole base
        every step".

    Raises:
      UserError: mode "on" with a reason.
    """
    if mode == "off":
        return False
    if reason is None:
        return True
    if mode == "on":
        raise UserError(f"config.{field}='on' cannot be used: {reason}; set it to 'auto' or 'off'")
    say(f"{without} ({field}=auto): {reason}")
    return False
