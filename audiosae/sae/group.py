"""Stacked training of the configs of one width: hand-written backward of the paper loss, Adam, pin."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import WorkspaceError
from ..jobs import CancelToken
from . import config as C
from .config import ADAM_BETAS, ADAM_EPS, SAEConfig
from .model import SparseAutoencoder, _init_weights


_PARAMS = ("W_enc", "b_enc", "W_dec", "b_dec")


class _WidthGroup:
    """All configs of one width, trained together: parameters stacked on a leading [G] axis.

    Works in normalised units.  ``compute_gradients`` is the hand-written backward of the
    documented loss (checked against autograd in the tests); ``adam_step`` updates and re-pins.
    """

    def __init__(self, configs: list[SAEConfig], indices: list[int], d_in: int, seed: int, device: torch.device):
        self.configs = configs
        self.indices = indices
        self.d_in = d_in
        self.d_sae = configs[0].d_sae
        self.G = len(configs)
        self.device = device
        w_enc, w_dec = _init_weights(d_in, self.d_sae, seed)
        G, N, d = self.G, self.d_sae, d_in
        self.params = {
            "W_enc": w_enc.to(device).unsqueeze(0).repeat(G, 1, 1),
            "b_enc": torch.zeros(G, N, device=device),
            "W_dec": w_dec.to(device).unsqueeze(0).repeat(G, 1, 1),
            "b_dec": torch.zeros(G, d, device=device),
        }
        self.grads = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.adam_m = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.adam_v = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.lams = torch.tensor([c.l1_coefficient for c in configs], dtype=torch.float32, device=device)
        self.eps = torch.tensor([c.rms_eps for c in configs], dtype=torch.float32, device=device).view(G, 1, 1)
        self._buffers: torch.Tensor | None = None
        self.pin()

    @property
    def key(self) -> str:
        return f"w{self.d_sae}"

    def _workspace(self, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = self.G * rows * self.d_sae
        if self._buffers is None or self._buffers.shape[1] < size:
            self._buffers = torch.empty(3, size, device=self.device)
        h, f, g = (self._buffers[i, :size].view(self.G, rows, self.d_sae) for i in range(3))
        return h, f, g

    def chunk_rows(self, batch: int) -> int:
        """Rows of the batch processed at once (gradients accumulate over chunks)."""
        per_row = self.G * self.d_sae
        rows = max(1, C.MAX_CHUNK_ELEMENTS // per_row)
        if self.device.type == "cpu":
            rows = min(rows, max(C.MIN_CHUNK_ROWS, C.CPU_CHUNK_ELEMENTS // per_row))
        return max(1, min(batch, rows))

    def compute_gradients(self, x: torch.Tensor, lam_scale: float, measure: bool,
                          cancel: CancelToken | None = None) -> dict[str, torch.Tensor] | None:
        """Gradients of ``mse + lam * l1 / sqrt(d_in)`` (module docstring) into ``self.grads``.

        ``x``: normalised batch ``[B, d_in]``.  Returns per-config sums (loss parts) when ``measure``.
        ``cancel`` is checked between row chunks: a wide grid's step takes ~1 s on a CPU core,
        too long to wait for a cancel; only ``self.grads`` is touched before ``adam_step``, so
        stopping here leaves the parameters at the last completed step.
        """
        p, gr = self.params, self.grads
        G, N, d = self.G, self.d_sae, self.d_in
        batch = x.shape[0]
        for g in gr.values():
            g.zero_()
        mse_scale = 2.0 / (batch * d)
        l1_grad = (self.lams * (lam_scale / (batch * math.sqrt(d)))).view(G, 1, 1)
        sums = {"sq_err": torch.zeros(G, device=self.device, dtype=torch.float64)} if measure else None
        if measure:
            sums["l1"] = torch.zeros_like(sums["sq_err"])
            sums["active"] = torch.zeros_like(sums["sq_err"])
        rows_per_chunk = self.chunk_rows(batch)
        for start in range(0, batch, rows_per_chunk):
            if cancel is not None:
                cancel.raise_if_cancelled()
            xc = x[start:start + rows_per_chunk]
            rows = xc.shape[0]
            H, F, GF = self._workspace(rows)
            torch.baddbmm(p["b_enc"].unsqueeze(1), xc.expand(G, rows, d), p["W_enc"], out=H)
            H.relu_()
            # r = 1 / sqrt(mean h^2 + eps), per frame and config: [G, rows, 1]
            r = torch.linalg.vector_norm(H, dim=-1, keepdim=True).square_().div_(N).add_(self.eps).rsqrt_()
            torch.mul(H, r, out=F)
            recon = torch.baddbmm(p["b_dec"].unsqueeze(1), F, p["W_dec"])          # [G, rows, d]
            err = recon - xc
            if measure:
                sums["sq_err"] += err.double().pow(2).sum(dim=(1, 2))
                sums["l1"] += H.sum(dim=(1, 2), dtype=torch.float64)
                sums["active"] += torch.count_nonzero(H.view(G, -1), dim=1).double()
            g_recon = err.mul_(mse_scale)                                           # dL/dx_hat
            gr["b_dec"] += g_recon.sum(1)
            gr["W_dec"].baddbmm_(F.transpose(1, 2), g_recon)
            # RMSNorm backward: dL/dh = r * (dL/df - f * <dL/df, f> / N), and <dL/df, f> =
            # <dL/dx_hat, x_hat - b_dec> is a [G, rows] product instead of a pass over [G, rows, N].
            dot = (g_recon * (recon - p["b_dec"].unsqueeze(1))).sum(-1, keepdim=True).div_(N)
            torch.bmm(g_recon, p["W_dec"].transpose(1, 2), out=GF)
            GF.mul_(r).addcmul_(F, dot.mul_(r).neg_())
            GF.add_(l1_grad)                                                        # L1 on h (h >= 0)
            GF.mul_(F.sign_())                                                      # ReLU mask (f > 0 iff h > 0)
            gr["W_enc"].baddbmm_(xc.T.expand(G, d, rows), GF)
            gr["b_enc"] += GF.sum(1)
        return sums

    def adam_step(self, step: int, lr: float) -> None:
        """One Adam update (``step`` counts from 1), then pin the encoder scale."""
        b1, b2 = ADAM_BETAS
        bias1 = 1 - b1 ** step
        bias2_sqrt = math.sqrt(1 - b2 ** step)
        for k, param in self.params.items():
            grad, m, v = self.grads[k], self.adam_m[k], self.adam_v[k]
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = v.sqrt().div_(bias2_sqrt).add_(ADAM_EPS)
            param.addcdiv_(m, denom, value=-lr / bias1)
        self.pin()

    def pin(self) -> None:
        """Rescale (W_enc, b_enc) of each config so its encoder vectors have RMS norm 1 (module doc)."""
        w, b = self.params["W_enc"], self.params["b_enc"]
        scale = math.sqrt(self.d_sae) / torch.linalg.vector_norm(w.view(self.G, -1), dim=1).clamp_min(1e-12)
        w.mul_(scale.view(self.G, 1, 1))
        b.mul_(scale.view(self.G, 1))

    # -- checkpoint / export ------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for k in _PARAMS:
            out[f"{self.key}.{k}"] = self.params[k]
            out[f"{self.key}.adam_m.{k}"] = self.adam_m[k]
            out[f"{self.key}.adam_v.{k}"] = self.adam_v[k]
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], path: Path) -> None:
        for name, target in self.state_tensors().items():
            t = tensors.get(name)
            if t is None or tuple(t.shape) != tuple(target.shape):
                raise WorkspaceError(f"{path}: checkpoint tensor {name!r} is missing or has the wrong shape")
            target.copy_(t.to(target.device))

    def export(self, j: int, mean: torch.Tensor, scale: float) -> SparseAutoencoder:
        """Config ``j`` of the group as a raw-latent SAE (normalisation folded in, float64 maths)."""
        cfg = self.configs[j]
        w_enc = self.params["W_enc"][j].detach().cpu().double()
        b_enc = self.params["b_enc"][j].detach().cpu().double()
        w_dec = self.params["W_dec"][j].detach().cpu().double()
        b_dec = self.params["b_dec"][j].detach().cpu().double()
        mu = mean.double().cpu()
        sae = SparseAutoencoder(SAEConfig(**cfg.to_dict()))
        with torch.no_grad():
            sae.W_enc.copy_((w_enc * scale).float())
            sae.b_enc.copy_((b_enc - scale * (mu @ w_enc)).float())
            sae.W_dec.copy_((w_dec / scale).float())
            sae.b_dec.copy_((b_dec / scale + mu).float())
        return sae


