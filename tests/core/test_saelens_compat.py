"""The real SAELens package loads our SAELens-layout exports and computes the same features.

SAELens is not a dependency: it lives in a throwaway environment, e.g.::

    uv venv /tmp/saelens && uv pip install --python /tmp/saelens/bin/python sae-lens

and runs in a subprocess.  ``AUDIOSAE_SAELENS_PYTHON`` names its interpreter; without it
``/tmp/saelens/bin/python`` is used when present; otherwise the test is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from audiosae.exports import export_saelens
from audiosae.sae import SAEConfig, SparseAutoencoder


def saelens_python() -> str:
    path = os.environ.get("AUDIOSAE_SAELENS_PYTHON") or "/tmp/saelens/bin/python"
    if not Path(path).is_file():
        pytest.skip("sae_lens is not installed: set AUDIOSAE_SAELENS_PYTHON to an interpreter that has it "
                    "(e.g. uv venv /tmp/saelens && uv pip install --python /tmp/saelens/bin/python sae-lens)")
    probe = subprocess.run([path, "-c", "import sae_lens"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        pytest.skip(f"{path} cannot import sae_lens: {probe.stderr.strip()[-300:]}")
    return path


SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from sae_lens import SAE
    folder, x_path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    sae = SAE.load_from_disk(folder, device="cpu")
    x = torch.from_numpy(np.load(x_path))
    with torch.no_grad():
        feats = sae.encode(x)
        recon = sae.decode(feats)
    np.save(out + "_feats.npy", feats.numpy())
    np.save(out + "_recon.npy", recon.numpy())
    print(json.dumps({"class": type(sae).__name__, "architecture": sae.cfg.architecture()}))
""")


def random_sae(arch: str, rmsnorm: bool, seed: int) -> SparseAutoencoder:
    k = 5 if arch in ("topk", "batchtopk") else None
    sae = SparseAutoencoder(SAEConfig(16, 64, 0.0 if k else 0.05, architecture=arch, rmsnorm=rmsnorm, k=k))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (sae.W_enc, sae.W_dec):
            p.copy_(torch.randn(p.shape, generator=gen) / 4)
        sae.b_enc.copy_(torch.randn(64, generator=gen) / 10)
        sae.b_dec.copy_(torch.randn(16, generator=gen))
        if sae.threshold is not None:
            sae.threshold.copy_(torch.rand(64, generator=gen) * 0.5)
    return sae


@pytest.mark.parametrize("arch,rmsnorm,expected", [
    ("relu", False, "standard"), ("topk", False, "topk"), ("jumprelu", False, "jumprelu"),
    ("batchtopk", False, "jumprelu"), ("relu", True, "standard"), ("jumprelu", True, "jumprelu")])
def test_sae_lens_loads_our_export_and_gives_the_same_features(arch, rmsnorm, expected, tmp_path):
    python = saelens_python()
    sae = random_sae(arch, rmsnorm, seed=len(arch) + rmsnorm)
    export_saelens(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == expected
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(9))
    np.save(tmp_path / "x.npy", x.numpy())
    run = subprocess.run([python, "-c", SCRIPT, str(tmp_path / "sae"), str(tmp_path / "x.npy"), str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    assert info["architecture"] == expected
    feats = torch.from_numpy(np.load(tmp_path / "o_feats.npy"))
    recon = torch.from_numpy(np.load(tmp_path / "o_recon.npy"))
    x_hat, h, f = sae(x)
    assert torch.allclose(feats, h.detach(), atol=1e-5), "SAELens' feature activations are our h"
    if not rmsnorm:      # SAELens' forward is ours: the reconstruction agrees too
        assert torch.allclose(recon, x_hat.detach(), atol=1e-4)
    else:                # ours decodes RMSNorm(h): SAELens' own reconstruction differs (the note says so)
        assert not torch.allclose(recon, x_hat.detach(), atol=1e-3)
        assert "hidden_norm" in cfg
