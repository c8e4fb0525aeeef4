"""Evaluation of trained SAEs on a split: sparsity, L0, dead features, FVU."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import WorkspaceError
from ..frames import FrameStore
from ..jobs import CancelToken
import audiosae.sae.config as C
from .model import SparseAutoencoder
from .stats import _MomentAccumulator


def evaluate_saes(saes: Sequence[SparseAutoencoder], store: FrameStore, split: str = "val",
                  batch_size: int = 4096, cancel: CancelToken | None = None) -> list[dict[str, Any]]:
    """``evaluate_sae`` for several SAEs in one pass over ``split`` (``cancel`` checked per chunk)."""
    if not saes:
        return []
    n_total = int(store.n_frames(split))  # type: ignore[arg-type]
    if n_total == 0:
        raise WorkspaceError(f"the {split!r} split has no frames to evaluate on")
    moments = _MomentAccumulator(store.d_in)
    acc = [{"sq_err": 0.0, "abs_h": 0.0, "active": 0, "alive": torch.zeros(s.cfg.d_sae, dtype=torch.bool)}
           for s in saes]
    n = 0
    with torch.no_grad():
        for batch in store.iter_batches(split, batch_size, shuffle=False):  # type: ignore[arg-type]
            x_cpu = batch["latents"].float()
            moments.add(x_cpu)
            n += x_cpu.shape[0]
            for sae, a in zip(saes, acc):
                x = x_cpu.to(sae.device)
                rows = max(1, C.EVAL_CHUNK_ELEMENTS // sae.cfg.d_sae)
                for s in range(0, x.shape[0], rows):
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    xc = x[s:s + rows]
                    x_hat, h, _ = sae(xc)
                    a["sq_err"] += float((x_hat - xc).double().pow(2).sum())
                    a["abs_h"] += float(h.sum(dtype=torch.float64))
                    a["active"] += int(torch.count_nonzero(h))
                    a["alive"] |= (h > 0).any(0).cpu()
    total_dev = moments.total_squared_deviation
    out = []
    for sae, a in zip(saes, acc):
        d_sae = sae.cfg.d_sae
        dead = int((~a["alive"]).sum())
        fvu = a["sq_err"] / total_dev if total_dev > 0 else float("nan")
        out.append({
            "n_frames": n,
            "sparsity": 1.0 - a["active"] / (n * d_sae),
            "l0": a["active"] / n,
            "l1": a["abs_h"] / n,
            "dead_features": dead,
            "dead_fraction": dead / d_sae,
            "mse": a["sq_err"] / (n * sae.cfg.d_in),
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
        })
    return out


def evaluate_sae(sae: SparseAutoencoder, store: FrameStore, split: str = "val", batch_size: int = 4096,
                 cancel: CancelToken | None = None) -> dict[str, Any]:
    """Streaming metrics of ``sae`` on ``split`` (raw latent units).

    ``sparsity``: fraction of zero entries of h; ``l0``: mean active features per frame;
    ``l1``: mean ||h||_1 per frame; ``dead_features``/``dead_fraction``: features never active
    on these frames; ``mse``: mean squared error per element; ``fvu``: sum of squared errors /
    sum of squared deviations from the split's mean; ``explained_variance = 1 - fvu``.
    """
    return evaluate_saes([sae], store, split, batch_size, cancel)[0]
