"""The one set of defaults, read by the CLI (``audiosae train``, ``demo``, ``describe``, ``steer``,
``trace``), the studio's wizard and views, ``TrainSettings`` and the workflows; nothing here
imports torch or Qt.

The SAE budget: by default an SAE grid trains until its held-out loss (on the validation
split) stops improving, within a budget of ``default_sae_frames(n_train, batch)`` training
frames: ``SAE_EPOCHS_EQUIVALENT`` passes over the corpus, but at least ``SAE_MIN_STEPS``
optimizer steps (a small corpus is revisited more often) and at most ``SAE_MAX_FRAMES``
(a large corpus is sampled, not exhausted; the plateau stop usually ends earlier).
"""

from __future__ import annotations

import math

# The grid (the paper: widths 4x-256x, lambda 0.005-0.15).
DEFAULT_EXPANSIONS: tuple[int, ...] = (4, 8, 16)
DEFAULT_L1S: tuple[float, ...] = (0.005, 0.02, 0.05)
DEFAULT_ARCHITECTURE = "relu-rmsnorm"
ARCHITECTURE_CHOICES = ("relu-rmsnorm", "topk", "batchtopk", "jumprelu")
DEFAULT_KS: tuple[int, ...] = (8, 16, 32)              # TopK / BatchTopK grids (k of d_in/16 .. d_in/4 at 128-d)
DEFAULT_L0S: tuple[float, ...] = (0.5, 1.0, 2.0)       # JumpReLU lambda (SAELens' l0_coefficient convention)
PAPER_L1_RANGE = (0.005, 0.15)

# Optimisation.
SAE_BATCH_SIZE = 512           # frames per SAE step: 8x the steps of 4096 for about the same compute on CPU
                               # (the CPU path works in 256-row chunks anyway; Adam adds ~10 % a step)
SAE_LR = 4e-3                  # bench: x8 on 10 min of real music, same budget: L0 113 -> 70 at FVU 0.069 -> 0.071 (lambda 0.02)
SAE_LR_WARMUP_FRACTION = 0.02  # linear learning-rate warm-up over this fraction of the budget
SAE_L1_WARMUP_FRACTION = 0.05  # sparsity coefficient ramps from 0 over this fraction of the budget
SAE_LR_DECAY_FRACTION = 0.2    # linear decay to 0 over the last 20 % (after a plateau: 25 % of the steps so far)
SAE_EPOCHS_EQUIVALENT = 15
SAE_MIN_STEPS = 1000
SAE_MAX_FRAMES = 50_000_000
# Convergence: the held-out loss (validation frames, lambda at full strength) is measured
# SAE_EVALS_PER_BUDGET times over the budget; an SAE has converged when it improved by less
# than SAE_PLATEAU_TOLERANCE (relative) over SAE_PLATEAU_PATIENCE measurements in a row.
SAE_EVALS_PER_BUDGET = 60
SAE_PLATEAU_PATIENCE = 4
SAE_PLATEAU_TOLERANCE = 2e-3
SAE_HELD_OUT_FRAMES = 8192

# Probes and the rest of a run.
# The probe schedule (benchmarks/bench_probe_speed.py, 10 min of real music, x8 SAE): the old
# 40 epochs at a constant rate with early stopping took 8x longer for the same accuracy
# (pitch 0.58 / 0.65, loudness 0.28 / 0.29, timbre 0.19 / 0.14-0.19 on the val split) as
# a few epochs with the rate decayed to 0 and the L2 strengths compared on every 4th frame.
PROBE_BATCH_SIZE = 1024      # more, smaller steps than the SAEs' batches (the features are the cost)
PROBE_LR = 1e-2
PROBE_MAX_EPOCHS = 10
PROBE_LR_DECAY = True        # linear to 0 over PROBE_MAX_EPOCHS
PROBE_SELECTION_STRIDE = 4   # L2 strengths compared on every 4th frame of the inner split
PROBE_PATIENCE = 4
# Probe evaluation: cross-validated by whole source (PROBE_FOLDS folds) when the corpus has
# fewer than PROBE_CV_MAX_SOURCES sources; PROBE_FOLDS 0 or 1 = never (the val split only).
PROBE_FOLDS = 5
PROBE_CV_MAX_SOURCES = 20
# Cross-entropy class weights: None (every frame weighs the same), "balanced" (n / (K n_k)) or
# "auto": the paper's three unweighted (its method), balanced for the registered attributes, whose
# classes are very uneven (onset: 1-5 % onsets; chord: 93 % none); unweighted, their probes answer
# the majority class (balanced accuracy 0.50 for onset on the MIDI and real-music corpora).
PROBE_CLASS_WEIGHT: str | None = "auto"
CLASS_WEIGHT_CHOICES = ("auto", "none", "balanced")   # the CLI's / wizard's spelling
SEED = 0

# Steering methods (``audiosae.steering.methods`` documents them; named here, torch-free, for the
# CLI's choices).  Every base method also exists as "<method>+match" (loudness matched per frame).
STEER_BASE_METHODS = ("paper", "mass-mean", "orthogonal", "solve", "clamp", "top-features")
STEER_METHODS = STEER_BASE_METHODS + tuple(m + "+match" for m in STEER_BASE_METHODS)
# By the steering evaluation on held-out real music (README, "Steering methods"): the best-scored
# method whose hit rate keeps rising with alpha.  solve+match scored best (1.22 vs 1.37) but saturates
# (A4 0.85 at alpha 10, 20 and 30) and on the built-in tones stops at 0.10 where paper+match reaches 0.58.
DEFAULT_STEER_METHOD = "paper+match"
STEER_ALPHA = 20.0             # `audiosae steer`'s strength (the paper: 1, 10, 20, 30)

# Corpora (``audiosae build`` and the studio's wizard).
DEFAULT_BACKEND = "mel"          # a new workspace's latent backend: offline, no weights to download
WIZARD_BUILTIN_MINUTES = 10.0    # the wizard's built-in corpus length (``audiosae build --builtin``: all of it
                                 # unless --minutes)

# The offline demo (``audiosae demo``, ``audiosae.workflows.demo``): a small grid on the built-in tones.
DEMO_WORKSPACE = "demo-workspace"  # where ``audiosae demo`` puts its workspace (relative to the cwd)
DEMO_MINUTES = 4.0                 # minutes of built-in tones
DEMO_BACKEND = "mel"               # the demo's latent backend (always mel: offline and fast)
DEMO_GRID = {"expansions": [4, 16], "l1s": [0.01, 0.05], "epochs": 20, "batch_size": 256}   # TrainSettings(**)
DEMO_ALPHA = 20.0                  # the steered example's strength

# Feature descriptions (``audiosae describe``, ``audiosae.workflows.describe``).
DESCRIBE_TOP = 5          # labels per feature, best first
DESCRIBE_THREADS = 1      # CPU threads while labelling (on a busy machine 1 was 2-3x faster than 2)
# The boost check (``describe --boost-check``, ``audiosae.feature_loop`` / ``boost_schedule``)
BOOST_AMOUNT = 4.0        # x the feature's mean active value
BOOST_SCHEDULE = "every"  # every frame; "pulses" / "beats" boost only some (events in time)
BOOST_BPM = 120.0         # the pulse rate of "pulses"
BOOST_PULSE_FRAMES = 2    # frames per pulse (27 ms at 75 frames/s)


# Tracing DiffRhythm generation (``audiosae trace`` and the studio's generation view, both through
# ``audiosae.workflows.trace``).  ``audiosae.generation`` reads its sampler defaults from here.
TRACE_SECONDS = 95.0           # the base model's length (up to 285 s with the full model)
TRACE_SEED = 0                 # a batch uses TRACE_SEED + i for prompt i
TRACE_STEPS = 32               # sampler states (31 Euler steps)
TRACE_CFG_STRENGTH = 4.0       # classifier-free guidance strength
TRACE_THRESHOLD = 0.9          # convergence threshold on s_t
TRACE_DTYPE = "auto"           # DiT precision: float16 on CUDA, float32 elsewhere
TRACE_DTYPES = ("auto", "float32", "float16", "bfloat16")


def default_sae_frames(n_train: int, batch_size: int = SAE_BATCH_SIZE, *,
                       epochs_equivalent: float = SAE_EPOCHS_EQUIVALENT, min_steps: int = SAE_MIN_STEPS,
                       max_frames: int = SAE_MAX_FRAMES) -> int:
    """The default SAE budget in training frames for a corpus of ``n_train`` training frames."""
    frames = max(int(math.ceil(epochs_equivalent * n_train)), int(min_steps) * int(batch_size))
    return max(int(batch_size), min(frames, int(max_frames)))
