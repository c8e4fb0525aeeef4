"""The result of a steering evaluation (``evaluate.evaluate_steering``): its cells, methods x
alpha matrices, the best method by a documented rule, and its files (``steer-eval.json``,
schema-versioned and written atomically, and one PNG matrix per target)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioSAEError
from ..storage import SCHEMA_VERSION, atomic_write_json, read_json_object
from . import eval_metrics as EM

KIND = "audiosae.steering_evaluation"
JSON_NAME = "steer-eval.json"
HIT_GOAL = 0.5
# The isolation goals at the alpha that first reaches HIT_GOAL: the bounds the score
# divides each non-target shift by.
GOALS = {"loudness_db": 3.0, "centroid_pct": 15.0, "pitch_semitones": 1.0, "clipped_fraction": 0.001}
BEST_METHOD_RULE = (
    "For each method, alpha* = the smallest alpha whose mean hit rate (over the clips) is >= 0.5. "
    "Cost at alpha* = sum over the non-target attributes of (shift / goal): mean |delta loudness| / 3 dB, "
    "median |delta centroid| / 15 %, mean |delta pitch| / 1 semitone, plus clipped fraction / 0.1 %, "
    "all against the unsteered reconstruction. Methods that reach the hit goal rank first, by cost, "
    "then by alpha*, then by Fréchet distance; the others follow by their best hit rate.")
# Flat per-cell metrics (``cell["summary"]``) that ``matrix`` can tabulate.
METRICS = ("hit_rate", "hit_rate_all_frames", "target_distance", "loudness_shift_db", "centroid_change_pct",
           "pitch_shift_semitones", "loudness_shift_db_vs_original", "centroid_change_pct_vs_original",
           "frechet", "mmd", "frechet_vs_original", "mmd_vs_original", "peak_dbfs", "clipped_fraction",
           "outside_max_abs_delta", "outside_max_abs_delta_beyond_guard", "outside_loudness_max_abs_db")


@dataclass
class Matrix:
    """``values[i, j]``: ``metric`` for ``methods[i]`` at ``alphas[j]`` (mean over the clips)."""

    metric: str
    methods: list[str]
    alphas: list[float]
    values: np.ndarray

    def get(self, method: str, alpha: float) -> float:
        return float(self.values[self.methods.index(method), self.alphas.index(float(alpha))])


@dataclass
class SteeringEvaluation:
    meta: dict[str, Any]
    cells: list[dict[str, Any]] = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        return list(self.meta["methods"])

    @property
    def alphas(self) -> list[float]:
        return [float(a) for a in self.meta["alphas"]]

    @property
    def targets(self) -> list[tuple[str, str]]:
        return [(t["attribute"], t["target"]) for t in self.meta["targets"]]

    def select(self, *, clip: str | None = None, attribute: str | None = None, target: str | None = None,
               method: str | None = None, alpha: float | None = None) -> list[dict[str, Any]]:
        """The cells that match every given field."""
        want = {"clip": clip, "attribute": attribute, "target": target, "method": method,
                "alpha": None if alpha is None else float(alpha)}
        return [c for c in self.cells if all(v is None or c[k] == v for k, v in want.items())]

    def steer_kwargs(self, cell: dict[str, Any]) -> dict[str, Any]:
        """The ``control.steer_wave`` arguments that reproduce ``cell`` (to audition it): pass
        them with the clip's wave and, for ``context=``, ``methods.prepare_method(...)``."""
        return {"attribute": cell["attribute"], "target": int(cell["target_class"]), "alpha": float(cell["alpha"]),
                "method": cell["method"], "start": self.meta.get("start"), "end": self.meta.get("end"),
                "keep_residual": bool(self.meta.get("keep_residual", False)),
                "limit": bool(self.meta.get("limit", True))}

    def _default_target(self, attribute: str | None, target: str | None) -> tuple[str | None, str | None]:
        if attribute is None and target is None and len(self.targets) == 1:
            return self.targets[0]
        return attribute, target

    def matrix(self, metric: str, *, clip: str | None = None, attribute: str | None = None,
               target: str | None = None) -> Matrix:
        """Methods x alphas table of ``metric`` (one of ``METRICS``), the mean over the matching
        cells' finite values (NaN where there is none)."""
        if metric not in METRICS:
            raise AudioSAEError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
        attribute, target = self._default_target(attribute, target)
        values = np.full((len(self.methods), len(self.alphas)), np.nan)
        for i, m in enumerate(self.methods):
            for j, a in enumerate(self.alphas):
                xs = [c["summary"].get(metric) for c in self.select(clip=clip, attribute=attribute, target=target,
                                                                     method=m, alpha=a)]
                xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
                if xs:
                    values[i, j] = float(np.mean(xs))
        return Matrix(metric, self.methods, self.alphas, values)

    def best_method(self, *, clip: str | None = None, attribute: str | None = None,
                    target: str | None = None) -> dict[str, Any]:
        """The method ``BEST_METHOD_RULE`` picks, with every method's row of the ranking."""
        attribute, target = self._default_target(attribute, target)
        if attribute is None:
            raise AudioSAEError("best_method needs an attribute and target when several were evaluated")
        mats = {m: self.matrix(m, clip=clip, attribute=attribute, target=target)
                for m in ("hit_rate", "loudness_shift_db", "centroid_change_pct", "pitch_shift_semitones",
                          "clipped_fraction", "frechet")}
        parts = {"loudness": ("loudness_shift_db", GOALS["loudness_db"]),
                 "timbre": ("centroid_change_pct", GOALS["centroid_pct"]),
                 "pitch": ("pitch_shift_semitones", GOALS["pitch_semitones"])}
        rows = []
        for i, method in enumerate(self.methods):
            hits = mats["hit_rate"].values[i]
            reached = [j for j, h in enumerate(hits) if math.isfinite(h) and h >= HIT_GOAL]
            row: dict[str, Any] = {"method": method, "best_hit_rate": float(np.nanmax(hits)) if
                                   np.isfinite(hits).any() else math.nan}
            if reached:
                j = reached[0]
                components = {a: float(mats[key].values[i, j]) / goal for a, (key, goal) in parts.items()
                              if a != attribute and math.isfinite(mats[key].values[i, j])}
                clip_frac = float(mats["clipped_fraction"].values[i, j])
                components["clipping"] = (clip_frac if math.isfinite(clip_frac) else 0.0) / GOALS["clipped_fraction"]
                row.update(alpha=self.alphas[j], hit_rate=float(hits[j]), cost=float(sum(components.values())),
                           components=components, meets_goals=all(v <= 1.0 for v in components.values()),
                           frechet=float(mats["frechet"].values[i, j]))
            else:
                row.update(alpha=None, hit_rate=None, cost=math.inf, components={}, meets_goals=False,
                           frechet=math.nan)
            rows.append(row)

        def key(r: dict[str, Any]) -> tuple:
            if r["alpha"] is None:
                return (1, -(r["best_hit_rate"] if math.isfinite(r["best_hit_rate"]) else -1.0), 0.0, 0.0)
            fd = r["frechet"] if math.isfinite(r["frechet"]) else math.inf
            return (0, r["cost"], r["alpha"], fd)

        ranking = sorted(rows, key=key)
        best = ranking[0]
        return {"attribute": attribute, "target": target, "clip": clip, "rule": BEST_METHOD_RULE,
                "method": best["method"] if best["alpha"] is not None else None, "alpha": best["alpha"],
                "ranking": ranking}

    # ---- files ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        best = []
        for attribute, target in self.targets:
            best.append(self.best_method(attribute=attribute, target=target))
        return EM.json_clean({"schema_version": SCHEMA_VERSION, "kind": KIND, **self.meta, "best": best,
                              "cells": self.cells})

    def save(self, folder: str | Path, *, png: bool = True) -> dict[str, Any]:
        """``folder/steer-eval.json`` and one ``steer-eval-<attribute>-<target>.png`` matrix per
        target (written atomically).  Returns the paths."""
        from .eval_plot import png_name, write_matrix_png

        folder = Path(folder)
        paths: dict[str, Any] = {"json": str(folder / JSON_NAME), "png": []}
        if png:
            for attribute, target in self.targets:
                path = folder / png_name(attribute, target)
                write_matrix_png(self, path, attribute=attribute, target=target)
                paths["png"].append(str(path))
        atomic_write_json(folder / JSON_NAME, {**self.to_json(), "files": paths})
        return paths

    @classmethod
    def load(cls, path: str | Path) -> "SteeringEvaluation":
        path = Path(path)
        if path.is_dir():
            path = path / JSON_NAME
        data = read_json_object(path, kind="steering evaluation", document_kind=KIND)
        cells = data.pop("cells", [])
        for key in ("schema_version", "kind", "best", "files"):
            data.pop(key, None)

        def restore(value: Any) -> Any:  # null -> NaN in the numbers the matrices average
            if isinstance(value, dict):
                return {k: restore(v) for k, v in value.items()}
            return math.nan if value is None else value

        for cell in cells:
            cell["summary"] = restore(cell.get("summary", {}))
        return cls(meta=data, cells=cells)


__all__ = ["BEST_METHOD_RULE", "GOALS", "HIT_GOAL", "JSON_NAME", "KIND", "METRICS", "Matrix", "SteeringEvaluation"]
