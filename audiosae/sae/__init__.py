"""Sparse autoencoders on latent frames: the paper's ReLU + RMSNorm SAE, grid training, evaluation.

The package: ``config`` (``SAEConfig``, architectures, constants), ``model``
(``SparseAutoencoder``: forward, files), ``stats`` (input normalisation), ``group`` (stacked
training of one width: the hand-written backward below, and autograd for the other
architectures), ``trainer`` (``train_sae_grid``: schedule, convergence rule, checkpoints,
time estimate), ``evaluation``, ``saelens`` (SAELens-layout export and import; ``audiosae.exports``
re-exports it beside the CSV and Sonic Visualiser exports).

Besides the paper's SAE (the default, described below) an SAE can be ``topk``, ``batchtopk``
or ``jumprelu`` (SAELens' names), each with or without the RMSNorm on the code; see
``group._AutogradGroup`` for their losses.

Architecture (Paek et al. 2025), per frame ``x`` of a codec latent::

    h     = ReLU(W_enc x + b_enc)          pre-norm code, the L1 term acts on it
    f     = RMSNorm(h) = h / sqrt(mean_j h_j^2 + eps)     parameter-free, the "features"
    x_hat = W_dec f + b_dec
    loss  = ||x - x_hat||^2 + lambda * ||h||_1

Weights are stored in the SAELens layout: ``W_enc`` is ``[d_in, d_sae]`` and ``W_dec`` is
``[d_sae, d_in]``, so ``h = relu(x @ W_enc + b_enc)`` and ``x_hat = f @ W_dec + b_dec``.
The RMSNorm has no gain: a per-feature gain ``g`` is exactly absorbed by the rows of
``W_dec`` (``W_dec^T (g * f) = (g * W_dec)^T f``), so it would add parameters, not capacity.

Training choices (measured figures in the module's benchmark and the project report):

* **Input normalisation.**  Codec latents have arbitrary offset and scale, which would make
  lambda mean something different for every backend.  Training therefore works on
  ``x_n = (x - mu) * s`` with ``mu`` the per-dimension mean and ``s = sqrt(d_in / E||x - mu||^2)``
  (so ``E||x_n||^2 = d_in``: one unit of variance per dimension), both estimated from up to
  ``NORM_SAMPLE_FRAMES`` training frames before the first step.  At export the map is folded
  into the weights (``W_enc <- s W_enc``, ``b_enc <- b_enc - s mu W_enc``, ``W_dec <- W_dec / s``,
  ``b_dec <- b_dec / s + mu``), so a saved SAE takes raw latents and h, f are unchanged.

* **RMSNorm scale invariance.**  ``f`` does not change when ``h`` is multiplied by ``c > 0``
  (until ``mean h^2`` nears eps), so the L1 term can be lowered by shrinking the encoder's
  overall scale without making ``h`` any sparser.  Measured on synthetic latents (d_in 64,
  4x, 2000 Adam steps, lambda 0.005 / 0.05 / 0.15 in the convention below) with free
  weights and eps 1e-6: the encoder's RMS row norm fell from 1 to 0.09 / 0.05 / 0.04 and the
  sparsity ended at 0.65 / 0.74 / 0.74, falling (0.83 -> 0.74) at the larger lambdas while
  the L1 was paid for by shrinking instead; eps = 1 did the same with the decoder growing
  3x.  With the pin below: 0.67 / 0.90 / 0.96.  Once ``mean h^2 << eps`` the model turns into
  a plain ReLU SAE, where shrinking the encoder and growing the decoder again lowers the L1
  for free, so no eps stops the drift; it only moves it.  Training therefore pins the encoder's overall
  scale: after every Adam step, ``(W_enc, b_enc)`` of each SAE are rescaled together so that
  the per-feature encoder vectors (columns of ``W_enc``, normalised units) have RMS norm 1.  In the RMSNorm regime this
  rescaling leaves ``f``, ``x_hat`` and the MSE exactly unchanged; it only removes the one
  direction in which the L1 term could be gamed.  Per-feature scales stay free (they are not a
  symmetry of the model because the RMS mixes features).  The saved SAE is the plain paper
  architecture; the pin is a training constraint only.

* **eps = 1e-6** (``DEFAULT_RMS_EPS``).  With the pinned scale a firing feature has
  ``h ~ O(1)``, so ``mean_j h_j^2 >= ~1e-5`` even for one active feature out of 32768
  (256x of 128): eps is negligible for every frame that has any real activity, so the
  SAE is in the scale-invariant regime the paper describes.  It still bounds the division
  (an all-zero ``h`` gives ``f = 0``) and keeps a frame whose only activity is float noise
  (RMS < 1e-3) from being blown up to full scale.

* **Loss reduction.**  Per batch of ``B`` frames in normalised units::

      mse  = sum (x_n - x_hat_n)^2 / (B * d_in)     per element; about the FVU
      l1   = sum_j h_j / B                          per frame, summed over features
      loss = mse + lambda * l1 / sqrt(d_in)

  This is exactly the paper's per-frame loss ``||x - x_hat||^2 + lambda ||h||_1``, averaged
  over frames, for inputs scaled to ``E||x||^2 = 1`` (with unit-norm encoder vectors, h
  scales with x).  With this convention the paper's grid lambda = 0.005 .. 0.15 gives
  fraction-of-zero sparsity 0.65-0.98 at 4x and 0.90-0.99 at 16x on realistic synthetic
  latents and on log-mel frames, with no dead features (``benchmarks/bench_sae.py --sweep``);
  the paper reports 0.55-0.99.

* Adam (betas 0.9/0.999), constant learning rate with a linear decay to 0 over the last
  ``LR_DECAY_FRACTION`` of steps; lambda ramps linearly from 0 over the first
  ``l1_warmup_fraction`` of steps (fewer features die early).  Initialisation: decoder rows
  are random unit directions scaled by ``sqrt(d_in / d_sae)`` (so ``E||x_hat||^2 = d_in`` at
  start), the encoder is their transpose with unit-norm vectors, biases are zero.  The init depends
  only on (seed, d_in, d_sae), so every lambda of a width starts from the same point and an
  SAE trained in a grid equals the same SAE trained alone.

Grid training reads each batch once and feeds it to every config.  Configs of equal width
are stacked (``[G, ...]`` parameters) and trained with batched matmuls and a hand-written
backward pass on preallocated buffers (in-place ops, no autograd graph), which keeps the
step within ~10-15 % of the time of its five matmuls on CPU.
"""

from __future__ import annotations

# Re-exports: ``from audiosae.sae import ...`` keeps working for every name the single module had.
from .config import (CFG_FILE, CHECKPOINT_FILE, CHECKPOINT_KIND, DEFAULT_RMS_EPS,  # noqa: F401
                     EVAL_CHUNK_ELEMENTS, MAX_CHUNK_ELEMENTS, METRICS_FILE, NORM_SAMPLE_FRAMES, PROGRESS_INTERVAL_S,
                     SAE_KIND, WEIGHTS_FILE, SAEConfig, grid_configs)
from .evaluation import evaluate_sae, evaluate_saes
from .group import _WidthGroup  # noqa: F401
from .model import NUMERIC_METRICS, SparseAutoencoder, _json_safe, rms_norm  # noqa: F401
from .stats import _MomentAccumulator, normalisation_stats  # noqa: F401
from .trainer import train_sae_grid

__all__ = [
    "DEFAULT_RMS_EPS", "SAEConfig", "SparseAutoencoder", "rms_norm", "grid_configs", "train_sae_grid",
    "evaluate_sae", "evaluate_saes", "normalisation_stats",
]
