"""Stacked training of the configs of one width: hand-written backward of the paper loss, Adam, pin."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import WorkspaceError
from ..jobs import CancelToken
import audiosae.sae.config as C
from .config import ADAM_BETAS, ADAM_EPS, SAEConfig
from .model import SparseAutoencoder, _init_weights, rms_norm, topk_code


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
        self.chunk_stack = self.G   # configs the row chunks are sized for (a grid split over ranks keeps the whole group's)
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
        # Step at which each feature last fired (0 = never since the start); dead-feature tracking.
        self.last_fired = torch.zeros(G, N, dtype=torch.int64, device=device)
        self._fired: torch.Tensor | None = None     # features fired in the current step's batch
        self.dead_now: torch.Tensor | None = None    # [G, N] dead features before this step (set by the trainer)
        self.pin()

    @property
    def key(self) -> str:
        c = self.configs[0]
        if c.is_default_architecture:
            return f"w{self.d_sae}"       # as before architectures existed
        return f"w{self.d_sae}-{c.label}" + (f"-k{c.k}" if c.k is not None else "")

    def mark_fired(self, step: int) -> None:
        """Record the features that fired in the batch of ``step`` (``compute_gradients`` collected them)."""
        if self._fired is not None:
            self.last_fired[self._fired] = step
            self._fired = None

    def dead_mask(self, step: int, window_steps: int) -> torch.Tensor:
        """[G, N]: features that fired in none of the last ``window_steps`` steps (none before ``window_steps``)."""
        return self.last_fired <= step - window_steps

    def penalty(self, j: int, l1: float, active: float, rows: int) -> float:
        """The sparsity term of config ``j``'s loss from measured sums (lambda at full strength)."""
        return self.configs[j].l1_coefficient * l1 / (rows * math.sqrt(self.d_in))

    @torch.no_grad()
    def held_out(self, x: torch.Tensor, cancel: CancelToken | None = None) -> torch.Tensor:
        """[G, 3] float64 sums (squared error, l1 of h, active count) on normalised frames ``x``."""
        p = self.params
        G, d = self.G, self.d_in
        out = torch.zeros(G, 3, dtype=torch.float64, device=self.device)
        rows_per_chunk = self.chunk_rows(x.shape[0])
        for start in range(0, x.shape[0], rows_per_chunk):
            if cancel is not None:
                cancel.raise_if_cancelled()
            xc = x[start:start + rows_per_chunk]
            h = self._code(torch.baddbmm(p["b_enc"].unsqueeze(1), xc.expand(G, xc.shape[0], d), p["W_enc"]))
            f = h * torch.linalg.vector_norm(h, dim=-1, keepdim=True).square_().div_(self.d_sae).add_(self.eps).rsqrt_() \
                if self.configs[0].rmsnorm else h
            err = torch.baddbmm(p["b_dec"].unsqueeze(1), f, p["W_dec"]).sub_(xc)
            out[:, 0] += err.double().pow(2).sum(dim=(1, 2))
            out[:, 1] += h.sum(dim=(1, 2), dtype=torch.float64)
            out[:, 2] += torch.count_nonzero(h.view(G, -1), dim=1).double()
        return out

    def _code(self, pre: torch.Tensor) -> torch.Tensor:
        """Inference code h from pre-activations [G, rows, N]."""
        return pre.relu_()

    def _workspace(self, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = self.G * rows * self.d_sae
        if self._buffers is None or self._buffers.shape[1] < size:
            self._buffers = torch.empty(3, size, device=self.device)
        h, f, g = (self._buffers[i, :size].view(self.G, rows, self.d_sae) for i in range(3))
        return h, f, g

    def chunk_rows(self, batch: int) -> int:
        """Rows of the batch processed at once (gradients accumulate over chunks)."""
        per_row = self.chunk_stack * self.d_sae
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
        self._fired = None
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
                fired = (H > 0).any(dim=1)
                self._fired = fired if self._fired is None else self._fired.logical_or_(fired)
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
        for k in self.params:
            out[f"{self.key}.{k}"] = self.params[k]
            out[f"{self.key}.adam_m.{k}"] = self.adam_m[k]
            out[f"{self.key}.adam_v.{k}"] = self.adam_v[k]
        out[f"{self.key}.last_fired"] = self.last_fired
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], path: Path) -> None:
        for name, target in self.state_tensors().items():
            t = tensors.get(name)
            if t is None or tuple(t.shape) != tuple(target.shape):
                raise WorkspaceError(f"{path}: checkpoint tensor {name!r} is missing or has the wrong shape")
            if t.dtype != target.dtype:
                raise WorkspaceError(f"{path}: checkpoint tensor {name!r} is {t.dtype}, expected {target.dtype}")
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
            # The pre-activations are unchanged by the fold, so an inference threshold is too.
            threshold = self.inference_threshold(j)
            if sae.threshold is not None and threshold is not None:
                sae.threshold.copy_(threshold.float().cpu())
        return sae

    def inference_threshold(self, j: int) -> torch.Tensor | None:
        """Config ``j``'s per-feature threshold of the saved (inference) SAE, if it has one."""
        return None




# ---- the other architectures: autograd on the stacked parameters --------------------------------
class _JumpReLUFn(torch.autograd.Function):
    """``pre * (pre > t)``; d/dpre = the gate, d/dt = -(t / bw) K((pre - t) / bw), K the unit rectangle
    (Rajamanoharan et al. 2024, "Jumping ahead"; SAELens' JumpReLU)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        kernel = ((pre - threshold).abs() < bw / 2).to(grad.dtype)
        g_thr = (-(threshold / bw) * kernel * grad).sum(dim=1, keepdim=True)
        return grad * (pre > threshold), g_thr, None


class _StepFn(torch.autograd.Function):
    """``H(pre - t)``; only the threshold gets a gradient, -(1 / bw) K((pre - t) / bw) (DeepMind's form)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        kernel = ((pre - threshold).abs() < bw / 2).to(grad.dtype)
        return None, (-(1.0 / bw) * kernel * grad).sum(dim=1, keepdim=True), None


class _AutogradGroup(_WidthGroup):
    """Configs of one width *and* architecture (and k) other than the paper's ReLU + RMSNorm.

    Loss per batch of B frames in normalised units (``mse`` as in the package docstring)::

        relu (no RMSNorm): mse + lambda * sum_j h_j / (B sqrt(d_in))       decoder rows kept unit-norm
        jumprelu:          mse + lambda * L0 / (B d_in)                     L0 = sum Step(pre - t), i.e.
                           SAELens' MSE-summed-over-d_in loss with l0_coefficient = lambda, divided by d_in
        topk / batchtopk:  mse + AUXK_COEFFICIENT * min(n_dead / k_aux, 1) * aux_mse   (AuxK, k_aux = d_in / 2)

    The gradients come from autograd (JumpReLU's from the straight-through estimators above);
    Adam is the shared one.  With RMSNorm the encoder scale is pinned as for the paper's SAE
    (with the JumpReLU/BatchTopK thresholds rescaled alike, so h only changes by the scale);
    without it the decoder rows are renormalised to unit length after every step, the usual
    constraint that stops an L1 (or an AuxK) from being paid for by growing the decoder.
    """

    def __init__(self, configs: list[SAEConfig], indices: list[int], d_in: int, seed: int, device: torch.device):
        self.arch = configs[0].architecture
        self.rmsnorm = configs[0].rmsnorm
        self.k = configs[0].k
        self.dead_window_steps = 1
        self.topk_threshold = torch.zeros(len(configs), dtype=torch.float64, device=device)   # BatchTopK EMA
        super().__init__(configs, indices, d_in, seed, device)
        if self.arch == "jumprelu":
            G, N = self.G, self.d_sae
            self.params["threshold"] = torch.full((G, N), C.JUMPRELU_INIT_THRESHOLD, device=device)
            for store in (self.grads, self.adam_m, self.adam_v):
                store["threshold"] = torch.zeros(G, N, device=device)

    def penalty(self, j: int, l1: float, active: float, rows: int) -> float:
        lam = self.configs[j].l1_coefficient
        if self.arch == "relu":
            return lam * l1 / (rows * math.sqrt(self.d_in))
        if self.arch == "jumprelu":
            return lam * active / (rows * self.d_in)
        return 0.0

    def _code(self, pre: torch.Tensor) -> torch.Tensor:
        if self.arch == "relu":
            return pre.relu()
        if self.arch == "topk":
            return topk_code(pre, int(self.k))
        thr = self.params["threshold"] if self.arch == "jumprelu" else \
            self.topk_threshold.float().view(self.G, 1).expand(self.G, self.d_sae)
        return pre.relu() * (pre > thr.unsqueeze(1))

    def inference_threshold(self, j: int) -> torch.Tensor | None:
        if self.arch == "jumprelu":
            return self.params["threshold"][j].detach()
        if self.arch == "batchtopk":      # SAELens saves BatchTopK as JumpReLU with this threshold everywhere
            return torch.full((self.d_sae,), float(self.topk_threshold[j]), device=self.device)
        return None

    def _batch_thresholds(self, x: torch.Tensor) -> torch.Tensor:
        """BatchTopK: per config the (k B)-th largest relu(pre) over the whole batch, [G, 1, 1]."""
        p = self.params
        G, B = self.G, x.shape[0]
        keep = min(int(self.k) * B, B * self.d_sae)
        with torch.no_grad():
            pre = torch.baddbmm(p["b_enc"].unsqueeze(1), x.expand(G, B, self.d_in), p["W_enc"]).relu_()
            kth = torch.topk(pre.view(G, -1), keep, dim=1, sorted=False).values.min(dim=1).values
        return kth.view(G, 1, 1)

    def compute_gradients(self, x: torch.Tensor, lam_scale: float, measure: bool,
                          cancel: CancelToken | None = None) -> dict[str, torch.Tensor] | None:
        G, N, d = self.G, self.d_sae, self.d_in
        batch = x.shape[0]
        for g in self.grads.values():
            g.zero_()
        leaves = {k: v.detach().requires_grad_(True) for k, v in self.params.items()}
        lams = self.lams.view(G, 1, 1) * lam_scale
        sums = {k: torch.zeros(G, device=self.device, dtype=torch.float64) for k in ("sq_err", "l1", "active")}
        fired = torch.zeros(G, N, dtype=torch.bool, device=self.device)
        batch_thr = self._batch_thresholds(x) if self.arch == "batchtopk" else None
        dead = self.dead_now if self.arch in C.TOPK_FAMILY else None
        min_positive = torch.full((G,), math.inf, dtype=torch.float64, device=self.device)
        rows_per_chunk = self.chunk_rows(batch)
        for start in range(0, batch, rows_per_chunk):
            if cancel is not None:
                cancel.raise_if_cancelled()
            xc = x[start:start + rows_per_chunk]
            rows = xc.shape[0]
            pre = torch.baddbmm(leaves["b_enc"].unsqueeze(1), xc.expand(G, rows, d), leaves["W_enc"])
            penalty = None
            if self.arch == "relu":
                h = pre.relu()
                penalty = (lams * h).sum() / (batch * math.sqrt(d))
            elif self.arch == "topk":
                h = topk_code(pre, int(self.k))
            elif self.arch == "batchtopk":
                h = pre.relu() * (pre >= batch_thr)
            else:
                thr = leaves["threshold"].unsqueeze(1)
                h = _JumpReLUFn.apply(pre, thr, C.JUMPRELU_BANDWIDTH)
                penalty = (lams * _StepFn.apply(pre, thr, C.JUMPRELU_BANDWIDTH)).sum() / (batch * d)
            f = rms_norm(h, self.eps) if self.rmsnorm else h
            recon = torch.baddbmm(leaves["b_dec"].unsqueeze(1), f, leaves["W_dec"])
            err = recon - xc
            loss = err.pow(2).sum() / (batch * d)
            if penalty is not None:
                loss = loss + penalty
            if dead is not None and bool(dead.any()):
                loss = loss + self._auxk_loss(pre, dead, (xc - recon).detach(), leaves["W_dec"], batch)
            loss.backward()
            with torch.no_grad():
                active = h > 0
                fired |= active.any(dim=1)
                if measure:
                    sums["sq_err"] += err.double().pow(2).sum(dim=(1, 2))
                    sums["l1"] += h.sum(dim=(1, 2), dtype=torch.float64)
                    sums["active"] += active.view(G, -1).sum(dim=1).double()
                if self.arch == "batchtopk":
                    masked = torch.where(active, h, torch.full_like(h, math.inf))
                    min_positive = torch.minimum(min_positive, masked.view(G, -1).min(dim=1).values.double())
        for k, leaf in leaves.items():
            if leaf.grad is not None:
                self.grads[k].copy_(leaf.grad)
        self._fired = fired
        if self.arch == "batchtopk":          # SAELens: EMA of the smallest kept activation
            seen = torch.isfinite(min_positive)
            lr = C.BATCHTOPK_THRESHOLD_LR
            self._next_topk_threshold = torch.where(seen, (1 - lr) * self.topk_threshold + lr * min_positive,
                                                    self.topk_threshold)
        return sums if measure else None

    def _auxk_loss(self, pre: torch.Tensor, dead: torch.Tensor, residual: torch.Tensor, w_dec: torch.Tensor,
                   batch: int) -> torch.Tensor:
        """AuxK (Gao et al. 2024; SAELens): the top k_aux dead latents reconstruct the residual."""
        G = self.G
        k_aux_full = max(1, self.d_in // 2)
        total = pre.new_zeros(())
        for g in range(G):
            n_dead = int(dead[g].sum())
            if n_dead == 0:
                continue
            k_aux = min(k_aux_full, n_dead)
            scale = min(n_dead / k_aux_full, 1.0)
            masked = torch.where(dead[g], pre[g], torch.full_like(pre[g], -math.inf))
            acts = topk_code(masked, k_aux)
            recons = acts @ w_dec[g]
            total = total + C.AUXK_COEFFICIENT * scale * (recons - residual).pow(2).sum() / (batch * self.d_in)
        return total

    def adam_step(self, step: int, lr: float) -> None:
        if self.arch == "batchtopk" and getattr(self, "_next_topk_threshold", None) is not None:
            self.topk_threshold.copy_(self._next_topk_threshold)
            self._next_topk_threshold = None
        super().adam_step(step, lr)

    def pin(self) -> None:
        if self.rmsnorm:
            w, b = self.params["W_enc"], self.params["b_enc"]
            scale = math.sqrt(self.d_sae) / torch.linalg.vector_norm(w.view(self.G, -1), dim=1).clamp_min(1e-12)
            w.mul_(scale.view(self.G, 1, 1))
            b.mul_(scale.view(self.G, 1))
            if "threshold" in self.params:
                self.params["threshold"].mul_(scale.view(self.G, 1))
            self.topk_threshold.mul_(scale.double())
        else:
            w_dec = self.params["W_dec"]
            w_dec.div_(torch.linalg.vector_norm(w_dec, dim=2, keepdim=True).clamp_min(1e-12))
        if "threshold" in self.params:
            self.params["threshold"].clamp_(min=0.0)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = super().state_tensors()
        if self.arch == "batchtopk":
            out[f"{self.key}.topk_threshold"] = self.topk_threshold
        return out


def group_key(cfg: SAEConfig) -> tuple:
    """Configs with equal keys are stacked into one group."""
    return (cfg.d_sae, cfg.architecture, cfg.rmsnorm, cfg.k)


def make_group(configs: list[SAEConfig], indices: list[int], d_in: int, seed: int,
               device: torch.device) -> _WidthGroup:
    """The hand-written fast path for the paper's SAE, autograd for the other architectures."""
    cls = _WidthGroup if configs[0].is_default_architecture else _AutogradGroup
    return cls(configs, indices, d_in, seed, device)
