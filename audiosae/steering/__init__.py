"""Control vectors (``control``), steering methods (``methods``: the paper's probe rows,
mass-mean directions and the isolation methods, whose math is in ``isolation``; one call,
``prepare_method``, readies any of them) and the level rule every steered output goes through
(``level``).

``from audiosae.steering import steer_wave, control_vector, ...`` keeps working: the names of
the former ``audiosae/steering.py`` are re-exported here.
"""

from __future__ import annotations

from .control import (ALPHA_UNIT, PAPER_ALPHAS, SteerResult, attribute_shift, check_alpha, control_vector,
                      frame_mask, measure, steer_features, steer_latents, steer_wave)
from .methods import (BASE_METHODS, DEFAULT_METHOD, METHODS, ClassMeans, SteeringContext, check_method,
                      prepare_method, steering_direction, workspace_class_means)
from .level import (LevelReport, LevelRule, RAW, apply_level_rule, limit_peaks, loudness_db, merge_reports,
                    rule_for)

__all__ = ["ALPHA_UNIT", "PAPER_ALPHAS", "SteerResult", "attribute_shift", "check_alpha", "control_vector",
           "frame_mask", "measure", "steer_features", "steer_latents", "steer_wave",
           "LevelReport", "LevelRule", "RAW", "apply_level_rule", "limit_peaks", "loudness_db", "merge_reports",
           "rule_for", "BASE_METHODS", "DEFAULT_METHOD", "METHODS", "ClassMeans", "SteeringContext", "check_method",
           "prepare_method", "steering_direction", "workspace_class_means"]
