"""Control vectors and their strength: the paper's direction toward a probe class (``control_vector``,
the probe row ``w_k`` at ``ALPHA_UNIT`` per unit of alpha) and the check every alpha passes
(``check_alpha``).  ``steering.control`` (steering a clip) and ``steering.methods`` (the other
directions) both build on this module; it imports neither.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..errors import AudioSAEError
from ..probes import ProbeSet

PAPER_ALPHAS = (1.0, 10.0, 20.0, 30.0)


def check_alpha(alpha: Any) -> float:
    """``alpha`` as a float, or ``AudioSAEError`` if it is not a finite number >= 0.

    alpha is a strength along the direction toward the target class: a negative one would
    steer *away* from it, NaN/inf would only fail later as "latents contain NaN or inf"."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise AudioSAEError(f"alpha must be a number, got {alpha!r}") from None
    if not math.isfinite(value):
        raise AudioSAEError(f"alpha must be a finite number >= 0, got {value}")
    if value < 0:
        raise AudioSAEError(f"alpha must be >= 0 (a strength toward the target class), got {value:g}")
    return value


# The length of the control vector per unit of alpha, as a fraction of a typical ||f||.
# f = RMSNorm(h) has RMS 1, so ||f|| = sqrt(F) for F features; alpha = 10 adds a vector as
# long as f itself, alpha = 30 three times as long.  Raw probe rows have an arbitrary scale
# (it depends on the probe's regularisation and on F), which would make the paper's alphas
# 1..30 mean something different for every SAE; this unit makes them comparable.
ALPHA_UNIT = 0.1


def control_vector(probes: ProbeSet, attribute: str, target: int, *, normalize: bool = True) -> torch.Tensor:
    """The probe row ``w_k`` (a direction in SAE feature space) for class ``target``.

    With ``normalize`` (the default) it is rescaled to length ``ALPHA_UNIT * sqrt(F)``;
    ``normalize=False`` gives the raw probe row, as in the paper's formula.
    """
    weights = probes.weights[attribute]
    if not 0 <= target < weights.shape[0]:
        raise AudioSAEError(f"class {target} is out of range for {attribute} (0..{weights.shape[0] - 1})")
    w = weights[target].detach().float()
    # A class that never occurred in the probe's training frames has no learned direction
    # (its row only says "not me"): steering toward it would push somewhere arbitrary.
    if target not in probes.trained_classes(attribute):
        name = probes.class_names.get(attribute, [])[target] if target < len(probes.class_names.get(attribute, [])) \
            else str(target)
        raise AudioSAEError(f"{attribute} class {name} did not occur in the probe's training data; "
                            "there is no direction to steer toward")
    if normalize:
        norm = float(w.norm())
        w = w * (ALPHA_UNIT * w.numel() ** 0.5 / norm)
    return w
