"""SAELens-layout export/import, per-frame CSV lanes, Sonic Visualiser layers and their CLI commands."""

from __future__ import annotations

import bz2
import csv
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from audiosae.analysis import ClipAnalysis
from audiosae.attributes import AttributeSpec, FrameAttributes, midi_to_hz
from audiosae.errors import WorkspaceError
from audiosae.exports import (RMSNORM_WARNING, SAELENS_CFG_FILE, SAELENS_WEIGHTS_FILE, SV_LANES, SV_SESSION_FILE,
                              export_activations_csv, export_lanes_csv, export_saelens, export_sonic_visualiser,
                              import_saelens, load_exported_probes, saelens_import_warning, sv_lanes)
from audiosae.probes import ProbeSet
from audiosae.sae import SAEConfig, SparseAutoencoder, rms_norm

REPO_ROOT = Path(__file__).resolve().parents[2]


def random_sae(d_in: int = 8, d_sae: int = 32, eps: float = 1e-4, seed: int = 1) -> SparseAutoencoder:
    gen = torch.Generator().manual_seed(seed)
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=0.03, rms_eps=eps, name="tiny"),
                            metadata={"backend": "mel"})
    with torch.no_grad():
        for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec):
            p.copy_(torch.randn(p.shape, generator=gen))
    return sae


def tiny_probes(sae: SparseAutoencoder) -> ProbeSet:
    gen = torch.Generator().manual_seed(2)
    return ProbeSet(weights={"pitch": torch.randn(3, sae.cfg.d_sae, generator=gen)},
                    bias={"pitch": torch.randn(3, generator=gen)}, class_names={"pitch": ["a", "b", "c"]},
                    feature_kind="sae", sae={"name": sae.cfg.name, "fingerprint": sae.fingerprint()})


# ---- SAELens layout ----------------------------------------------------------------------------
def test_saelens_round_trip_gives_identical_outputs(tmp_path):
    sae = random_sae()
    export_saelens(sae, tmp_path / "out")
    back = import_saelens(tmp_path / "out")
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(3))
    h0, f0 = sae.encode(x)
    h1, f1 = back.encode(x)
    assert torch.equal(h0, h1) and torch.equal(f0, f1)
    assert torch.equal(sae.decode(f0), back.decode(f1))
    assert back.cfg.rms_eps == 1e-4 and back.cfg.l1_coefficient == 0.03 and back.cfg.name == "tiny"
    assert back.fingerprint() == sae.fingerprint()
    assert saelens_import_warning(back) is None
    assert back.metadata["backend"] == "mel"


def test_exported_files_follow_saelens_layout(tmp_path):
    sae = random_sae(d_in=8, d_sae=32)
    export_saelens(sae, tmp_path, metadata={"model_name": "mel"})
    with safe_open(str(tmp_path / SAELENS_WEIGHTS_FILE), framework="pt") as fh:
        shapes = {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}
        dtypes = {k: fh.get_tensor(k).dtype for k in fh.keys()}
    assert shapes == {"W_enc": [8, 32], "b_enc": [32], "W_dec": [32, 8], "b_dec": [8]}
    assert set(dtypes.values()) == {torch.float32}
    cfg = json.loads((tmp_path / SAELENS_CFG_FILE).read_text())
    assert cfg["architecture"] == "standard"
    assert (cfg["d_in"], cfg["d_sae"], cfg["dtype"]) == (8, 32, "float32")
    assert cfg["apply_b_dec_to_input"] is False and cfg["normalize_activations"] == "none"
    assert cfg["hidden_norm"]["type"] == "rms" and cfg["hidden_norm"]["eps"] == 1e-4
    assert "omits the RMSNorm" in cfg["note"]
    assert cfg["metadata"]["model_name"] == "mel"
    assert not (tmp_path / "probes.json").exists()


def test_probes_are_exported_beside_the_sae(tmp_path):
    sae = random_sae()
    probes = tiny_probes(sae)
    export_saelens(sae, tmp_path, probes=probes)
    assert (tmp_path / "probes.safetensors").is_file() and (tmp_path / "probes.json").is_file()
    back = import_saelens(tmp_path)
    loaded = load_exported_probes(tmp_path, back)
    assert loaded is not None and loaded.class_names["pitch"] == ["a", "b", "c"]
    assert torch.equal(loaded.weights["pitch"], probes.weights["pitch"])
    with pytest.raises(WorkspaceError, match="probes.json"):
        load_exported_probes(tmp_path, random_sae(seed=9))


def _export_then(tmp_path: Path, mutate) -> Path:
    export_saelens(random_sae(), tmp_path)
    mutate(tmp_path / SAELENS_WEIGHTS_FILE)
    return tmp_path


def test_truncated_weights_raise_workspace_error_naming_the_file(tmp_path):
    def truncate(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    with pytest.raises(WorkspaceError, match=SAELENS_WEIGHTS_FILE):
        import_saelens(_export_then(tmp_path, truncate))


def test_misshaped_and_missing_tensors_raise_workspace_error(tmp_path):
    sae = random_sae()
    tensors = {k: v.detach().clone() for k, v in sae._tensors().items()}
    export_saelens(sae, tmp_path / "a")
    save_file({**tensors, "W_enc": tensors["W_enc"].T.contiguous()}, str(tmp_path / "a" / SAELENS_WEIGHTS_FILE))
    with pytest.raises(WorkspaceError, match=r"sae_weights.safetensors.*'W_enc' has shape \[32, 8\]"):
        import_saelens(tmp_path / "a")
    export_saelens(sae, tmp_path / "b")
    save_file({k: v for k, v in tensors.items() if k != "b_dec"}, str(tmp_path / "b" / SAELENS_WEIGHTS_FILE))
    with pytest.raises(WorkspaceError, match=r"sae_weights.safetensors.*lacks tensor 'b_dec'"):
        import_saelens(tmp_path / "b")
    export_saelens(sae, tmp_path / "c")
    cfg = json.loads((tmp_path / "c" / SAELENS_CFG_FILE).read_text())
    del cfg["d_sae"]
    (tmp_path / "c" / SAELENS_CFG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(WorkspaceError, match=r"cfg.json.*d_sae"):
        import_saelens(tmp_path / "c")


def test_edited_weights_fail_the_fingerprint_check(tmp_path):
    sae = random_sae()
    export_saelens(sae, tmp_path)
    tensors = {k: v.detach().clone() for k, v in sae._tensors().items()}
    tensors["b_dec"][0] += 1.0
    save_file(tensors, str(tmp_path / SAELENS_WEIGHTS_FILE))
    with pytest.raises(WorkspaceError, match="fingerprint"):
        import_saelens(tmp_path)


def _write_plain_saelens(folder: Path, sae: SparseAutoencoder, **cfg) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in sae._tensors().items()},
              str(folder / SAELENS_WEIGHTS_FILE))
    base = {"architecture": "standard", "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae, "dtype": "float32",
            "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
            "metadata": {"hook_name": "blocks.0.hook_resid_post"}}
    (folder / SAELENS_CFG_FILE).write_text(json.dumps({**base, **cfg}))


def test_plain_saelens_sae_imports_with_rmsnorm_warning(tmp_path):
    sae = random_sae()
    _write_plain_saelens(tmp_path, sae)
    back = import_saelens(tmp_path)
    assert saelens_import_warning(back) == RMSNORM_WARNING
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(4))
    # SAELens' standard encoder with apply_b_dec_to_input subtracts b_dec first; our import folds it in.
    h_saelens = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc).detach()
    h, f = back.encode(x)
    assert torch.allclose(h, h_saelens, atol=1e-5)
    assert torch.allclose(f, rms_norm(h_saelens, back.cfg.rms_eps), atol=1e-5)
    assert torch.allclose(back.decode(f), f @ sae.W_dec.detach() + sae.b_dec.detach(), atol=1e-5)


def test_unsupported_saelens_architecture_is_refused(tmp_path):
    _write_plain_saelens(tmp_path, random_sae(), architecture="gated")     # jumprelu and topk are read now
    with pytest.raises(WorkspaceError, match=r"cfg.json.*'gated' is not supported"):
        import_saelens(tmp_path)


@pytest.mark.parametrize("arch,rmsnorm", [("topk", True), ("topk", False), ("batchtopk", True), ("jumprelu", False)])
def test_every_architecture_round_trips_through_the_saelens_layout(arch, rmsnorm, tmp_path):
    k = 4 if arch in ("topk", "batchtopk") else None
    sae = SparseAutoencoder(SAEConfig(8, 32, 0.0 if k else 0.5, architecture=arch, rmsnorm=rmsnorm, k=k, name="t"))
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
        if sae.threshold is not None:
            sae.threshold.uniform_(0, 0.3, generator=torch.Generator().manual_seed(2))
    export_saelens(sae, tmp_path)
    cfg = json.loads((tmp_path / SAELENS_CFG_FILE).read_text())
    assert cfg["architecture"] == {"topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}[arch]
    assert ("hidden_norm" in cfg) is rmsnorm and cfg["audiosae"]["architecture"] == sae.cfg.label
    if arch == "topk":
        assert cfg["k"] == 4
    back = import_saelens(tmp_path)
    assert back.cfg == sae.cfg and back.fingerprint() == sae.fingerprint()
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(3))
    for a, b in zip(sae(x), back(x)):
        assert torch.equal(a, b)


# ---- lanes and activations on a hand-built analysis -------------------------------------------
def synthetic_analysis(spec: AttributeSpec) -> tuple[ClipAnalysis, dict[str, list[int]]]:
    times = np.array([0.01, 0.03, 0.05, 0.07])
    classes = {"pitch": [0, 39, 40, 1], "loudness": [0, 5, 19, 10], "timbre": [3, 3, 7, 0]}
    probabilities = {}
    for attr, ks in classes.items():
        p = np.full((4, spec.n_classes(attr)), 0.1 / (spec.n_classes(attr) - 1))
        p[np.arange(4), ks] = 0.9
        probabilities[attr] = p
    f = np.zeros((4, 6), dtype=np.float32)
    f[0, 1], f[2, 1], f[3, 4] = 1.5, 0.25, 2.0
    measured = FrameAttributes(midi=[np.nan, 69.2, 70.0, 31.0], periodicity=[0.0, 0.9, 0.95, 0.8],
                               loudness_db=[-80.0, -20.5, -3.25, -30.0], centroid_hz=[0.0, 800.0, 1234.5, 300.0])
    analysis = ClipAnalysis(wave=np.zeros((1, 800), np.float32), sample_rate=10_000, times=times,
                            latents=np.zeros((4, 3), np.float32), h=f.copy(), f=f, measured=measured,
                            measured_classes=spec.classify(measured), probabilities=probabilities, source="synthetic")
    return analysis, classes


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_lanes_csv_has_one_row_per_frame_with_decoded_and_measured_values(tmp_path):
    spec = AttributeSpec()
    analysis, classes = synthetic_analysis(spec)
    export_lanes_csv(analysis, spec, tmp_path / "lanes.csv")
    rows = read_rows(tmp_path / "lanes.csv")
    assert len(rows) == analysis.n_frames
    assert [float(r["time_s"]) for r in rows] == analysis.times.tolist()
    assert [r["pitch_class"] for r in rows] == ["unvoiced", "A4", "A#4", "G1"]
    assert [r["pitch_value_midi"] for r in rows] == ["", "69.0", "70.0", "31.0"]
    for attr, unit in (("loudness", "db"), ("timbre", "hz")):
        names = spec.class_names(attr)
        assert [r[f"{attr}_class"] for r in rows] == [names[k] for k in classes[attr]]
        assert [float(r[f"{attr}_value_{unit}"]) for r in rows] == [spec.class_value(attr, k) for k in classes[attr]]
        assert all(float(r[f"{attr}_probability"]) == pytest.approx(0.9) for r in rows)
    assert [r["measured_midi"] for r in rows] == ["", "69.2", "70.0", "31.0"]
    assert [float(r["measured_loudness_db"]) for r in rows] == [-80.0, -20.5, -3.25, -30.0]
    assert [float(r["measured_centroid_hz"]) for r in rows] == [0.0, 800.0, 1234.5, 300.0]


def test_activations_csv_defaults_to_active_features(tmp_path):
    spec = AttributeSpec()
    analysis, _ = synthetic_analysis(spec)
    chosen = export_activations_csv(analysis, tmp_path / "act.csv")
    assert chosen == [1, 4]
    rows = read_rows(tmp_path / "act.csv")
    assert list(rows[0]) == ["time_s", "f1", "f4"]
    assert [float(r["f1"]) for r in rows] == [1.5, 0.0, 0.25, 0.0]
    assert [float(r["f4"]) for r in rows] == [0.0, 0.0, 0.0, 2.0]
    assert export_activations_csv(analysis, tmp_path / "two.csv", features=[0, 5]) == [0, 5]
    assert list(read_rows(tmp_path / "two.csv")[0]) == ["time_s", "f0", "f5"]


def parse_sv(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    for row in rows:
        assert len(row) in (2, 3)
        float(row[0]), float(row[1])  # numeric time and value, no header
    times = [float(r[0]) for r in rows]
    assert all(b > a for a, b in zip(times, times[1:]))
    return rows


def test_sonic_visualiser_lanes_are_numeric_time_value_rows(tmp_path):
    spec = AttributeSpec()
    analysis, classes = synthetic_analysis(spec)
    files = export_sonic_visualiser(analysis, spec, tmp_path / "sv")
    assert set(files) == set(SV_LANES)
    lanes = {name: parse_sv(path) for name, path in files.items()}
    # unvoiced frame 0 is a gap in both pitch lanes
    assert [float(r[0]) for r in lanes["measured_pitch_hz"]] == [0.03, 0.05, 0.07]
    assert float(lanes["measured_pitch_hz"][0][1]) == pytest.approx(float(midi_to_hz(69.2)))
    assert lanes["measured_pitch_hz"][0][2] == "A4"
    assert [r[2] for r in lanes["decoded_pitch_hz"]] == ["A4", "A#4", "G1"]
    assert [float(r[1]) for r in lanes["decoded_pitch_hz"]] == pytest.approx([440.0, float(midi_to_hz(70)),
                                                                             float(midi_to_hz(31))])
    assert [float(r[1]) for r in lanes["measured_loudness_db"]] == [-80.0, -20.5, -3.25, -30.0]
    assert [float(r[1]) for r in lanes["decoded_timbre_hz"]] == [spec.class_value("timbre", k)
                                                                 for k in classes["timbre"]]
    assert len(lanes["decoded_loudness_db"]) == len(lanes["measured_centroid_hz"]) == 4


# ---- registered attributes (issue 14) in the lanes and Sonic Visualiser layers ------------------
def registered_analysis(measured_chord: list[int] | None = None) -> tuple[ClipAnalysis, AttributeSpec, dict]:
    """The synthetic analysis plus two registered attributes: ``flatness`` (ordinal, binned) and
    ``chord`` (categorical); -1 = a frame without a measured label."""
    spec = AttributeSpec().with_attributes(["flatness", "chord"])
    analysis, _ = synthetic_analysis(spec)
    predicted = {"flatness": [1, 3, 3, 9], "chord": [2, 5, 0, 24]}
    measured = {"flatness": [0, 3, -1, 9], "chord": measured_chord or [-1, 5, 5, 0]}
    for attr, ks in predicted.items():
        p = np.full((4, spec.n_classes(attr)), 0.1 / (spec.n_classes(attr) - 1))
        p[np.arange(4), ks] = 0.9
        analysis.probabilities[attr] = p
        analysis.measured_classes[attr] = np.array(measured[attr], dtype=np.int64)
    return analysis, spec, {"predicted": predicted, "measured": measured}


def bin_centre(name: str) -> float:
    """Centre of a 'lo..hi' class name, computed from the name alone."""
    lo, hi = name.split(" ")[0].split("..")
    return (float(lo) + float(hi)) / 2


def test_registered_attributes_get_decoded_and_measured_sv_lanes(tmp_path):
    analysis, spec, classes = registered_analysis()
    assert spec.is_ordinal("flatness") and not spec.is_ordinal("chord")
    assert list(sv_lanes(analysis, spec)) == [*SV_LANES, "decoded_flatness", "measured_flatness",
                                              "decoded_chord", "measured_chord"]
    files = export_sonic_visualiser(analysis, spec, tmp_path / "sv")
    assert list(files) == list(sv_lanes(analysis, spec))
    lanes = {name: parse_sv(path) for name, path in files.items()}
    times = analysis.times.tolist()
    flat, chords = spec.class_names("flatness"), spec.class_names("chord")
    # ordinal: the value is the class's bin centre, the label its name
    assert [float(r[0]) for r in lanes["decoded_flatness"]] == times
    assert [r[2] for r in lanes["decoded_flatness"]] == [flat[k] for k in classes["predicted"]["flatness"]]
    assert [float(r[1]) for r in lanes["decoded_flatness"]] == pytest.approx(
        [bin_centre(flat[k]) for k in classes["predicted"]["flatness"]])
    # measured: frame 2 has no label, so it is a gap
    assert [float(r[0]) for r in lanes["measured_flatness"]] == [times[0], times[1], times[3]]
    assert [r[2] for r in lanes["measured_flatness"]] == [flat[0], flat[3], flat[9]]
    assert [float(r[1]) for r in lanes["measured_flatness"]] == pytest.approx([bin_centre(flat[k]) for k in (0, 3, 9)])
    # categorical: the value is the class index, the label its name
    assert [(float(r[1]), r[2]) for r in lanes["decoded_chord"]] == [(2.0, chords[2]), (5.0, chords[5]),
                                                                     (0.0, chords[0]), (24.0, chords[24])]
    assert [(float(r[0]), float(r[1]), r[2]) for r in lanes["measured_chord"]] == [
        (times[1], 5.0, chords[5]), (times[2], 5.0, chords[5]), (times[3], 0.0, chords[0])]


def test_paper_lanes_are_the_same_bytes_with_registered_attributes_and_an_unlabelled_one_has_no_file(tmp_path):
    analysis, spec, _ = registered_analysis(measured_chord=[-1, -1, -1, -1])
    with_extra = export_sonic_visualiser(analysis, spec, tmp_path / "extra")
    assert "decoded_chord" in with_extra and "measured_chord" not in with_extra   # no frame labelled: no file
    assert not (tmp_path / "extra" / "measured_chord.csv").exists()
    paper_spec = AttributeSpec()
    paper, _ = synthetic_analysis(paper_spec)
    paper_files = export_sonic_visualiser(paper, paper_spec, tmp_path / "paper")
    assert list(paper_files) == list(SV_LANES)
    for lane in SV_LANES:
        assert with_extra[lane].read_bytes() == paper_files[lane].read_bytes(), lane
    export_lanes_csv(paper, paper_spec, tmp_path / "paper.csv")
    with open(tmp_path / "paper.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["time_s", *[f"{a}_{c}" for a, u in (("pitch", "midi"), ("loudness", "db"), ("timbre", "hz"))
                                  for c in ("class", f"value_{u}", "probability")],
                      "measured_midi", "measured_loudness_db", "measured_centroid_hz"]


def test_lanes_csv_adds_the_measured_class_of_each_registered_attribute(tmp_path):
    analysis, spec, classes = registered_analysis()
    export_lanes_csv(analysis, spec, tmp_path / "lanes.csv")
    rows = read_rows(tmp_path / "lanes.csv")
    header = list(rows[0])
    assert header[-3:] == ["measured_centroid_hz", "measured_flatness_class", "measured_chord_class"]
    flat, chords = spec.class_names("flatness"), spec.class_names("chord")
    assert [r["measured_flatness_class"] for r in rows] == [flat[0], flat[3], "", flat[9]]
    assert [r["measured_chord_class"] for r in rows] == ["", chords[5], chords[5], chords[0]]
    assert [r["chord_class"] for r in rows] == [chords[k] for k in classes["predicted"]["chord"]]
    assert [float(r["flatness_value"]) for r in rows] == pytest.approx(
        [bin_centre(flat[k]) for k in classes["predicted"]["flatness"]])


def _wav(path: Path, seconds: float = 0.1, sr: int = 10_000) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return path


def sv_points(root: ET.Element) -> dict[str, list[tuple[int, float, str]]]:
    """Sparse model name -> its points (frame, value, label) in a session's XML."""
    datasets = {d.get("id"): d for d in root.iter("dataset")}
    return {m.get("name"): [(int(p.get("frame")), float(p.get("value")), p.get("label", ""))
                            for p in datasets[m.get("dataset")].iter("point")]
            for m in root.iter("model") if m.get("type") == "sparse"}


def sv_panes(root: ET.Element) -> list[list[str]]:
    """Each pane's layer names, back to front."""
    names = {layer.get("id"): layer.get("name") for layer in root.find("data").iter("layer")}
    return [[names[layer.get("id")] for layer in view.iter("layer")] for view in root.find("display").iter("view")]


def expected_points(files: dict[str, Path], sr: int) -> dict[str, list[tuple[int, float, str]]]:
    out = {}
    for lane, path in files.items():
        out[lane] = [(round(float(r[0]) * sr), float(r[1]), r[2] if len(r) > 2 else "") for r in parse_sv(path)]
    return out


EXPECTED_PANES = [["Waveform"], ["measured_pitch_hz", "decoded_pitch_hz"],
                  ["measured_loudness_db", "decoded_loudness_db"], ["measured_centroid_hz", "decoded_timbre_hz"],
                  ["measured_flatness", "decoded_flatness"], ["measured_chord", "decoded_chord"]]


def test_sv_session_holds_the_clip_and_every_lane_in_a_pane_per_attribute(tmp_path):
    analysis, spec, _ = registered_analysis()
    audio = _wav(tmp_path / "clip.wav")
    export_sonic_visualiser(analysis, spec, tmp_path / "plain")
    assert not (tmp_path / "plain" / SV_SESSION_FILE).exists()        # no audio given: no session
    files = export_sonic_visualiser(analysis, spec, tmp_path / "sv", audio=audio)
    root = ET.fromstring(bz2.decompress((tmp_path / "sv" / SV_SESSION_FILE).read_bytes()))
    wave = [m for m in root.iter("model") if m.get("type") == "wavefile"]
    assert len(wave) == 1 and wave[0].get("file") == str(audio.resolve()) and wave[0].get("mainModel") == "true"
    assert wave[0].get("sampleRate") == "10000" and wave[0].get("end") == "1000"
    assert sv_points(root) == expected_points(files, 10_000)
    assert sv_panes(root) == EXPECTED_PANES


def _sv_version(exe: str) -> str:
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    lines = [ln.strip() for ln in (res.stdout + res.stderr).splitlines()]
    return next(ln for ln in lines if ln and all(part.isdigit() for part in ln.split(".")))


@pytest.mark.skipif(shutil.which("sonic-visualiser") is None,
                    reason="Sonic Visualiser is not installed (apt-get install sonic-visualiser)")
def test_sonic_visualiser_reads_the_session_with_every_layer(tmp_path):
    """SV itself opens session.sv (headless: Qt's offscreen platform, driven by an OSC script)
    and saves it again: the re-saved session holds every lane's points, labels and panes."""
    exe = shutil.which("sonic-visualiser")
    analysis, spec, _ = registered_analysis()
    audio = _wav(tmp_path / "clip.wav")
    files = export_sonic_visualiser(analysis, spec, tmp_path / "sv", audio=audio)
    home = tmp_path / "home"
    config = home / ".config" / "sonic-visualiser"
    config.mkdir(parents=True)
    # answered already: the first-run network question would otherwise wait for a click
    (config / "Sonic Visualiser.conf").write_text(f"[Preferences]\nnetwork-permission-{_sv_version(exe)}=false\n")
    resaved = tmp_path / "resaved.sv"
    script = tmp_path / "script.txt"
    script.write_text(f"/open {tmp_path / 'sv' / SV_SESSION_FILE}\n1\n/save {resaved}\n/quit\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_RUNTIME_DIR": str(home)}
    os.chmod(home, 0o700)
    res = subprocess.run([exe, "--no-audio", "--no-osc", "--no-splash", "--osc-script", str(script)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert resaved.is_file(), f"Sonic Visualiser saved nothing (rc {res.returncode}): {res.stderr[-2000:]}"
    root = ET.fromstring(bz2.decompress(resaved.read_bytes()))
    got, want = sv_points(root), expected_points(files, 10_000)
    assert set(got) == set(want)
    for lane, points in want.items():
        assert [(f, lab) for f, _, lab in got[lane]] == [(f, lab) for f, _, lab in points], lane
        assert [v for _, v, _ in got[lane]] == pytest.approx([v for _, v, _ in points], rel=1e-5), lane
    assert sv_panes(root) == EXPECTED_PANES


# ---- CLI end to end on a tiny workspace -------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from audiosae.corpus import builtin_sources
    from audiosae.training import TrainSettings, train_workspace
    from audiosae.workspace import Workspace, build_corpus

    ws = Workspace.create(tmp_path_factory.mktemp("exports") / "ws", "mel")
    build_corpus(ws, builtin_sources("tones", minutes=0.2), device="cpu")
    train_workspace(ws, TrainSettings(expansions=[4], l1s=[0.02], epochs=1, batch_size=128), device="cpu")
    return ws


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "audiosae.cli", *args, "--device", "cpu", "--quiet"],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)


def test_cli_export_then_import_round_trip(workspace, tmp_path):
    name = workspace.sae_names()[0]
    out = tmp_path / "exported"
    res = run_cli("export-sae", str(workspace.root), "--sae", name, "--out", str(out), "--with-probes")
    assert res.returncode == 0, res.stderr
    for file in (SAELENS_CFG_FILE, SAELENS_WEIGHTS_FILE, "probes.safetensors", "probes.json"):
        assert (out / file).is_file()
    res = run_cli("import-sae", str(workspace.root), str(out), "--name", "copy")
    assert res.returncode == 0, res.stderr
    original = SparseAutoencoder.load(workspace.sae_dir(name))
    copy = SparseAutoencoder.load(workspace.sae_dir("copy"))
    assert copy.cfg.name == "copy" and copy.fingerprint() == original.fingerprint()
    probes = ProbeSet.load(workspace.probe_dir("copy"))
    probes.check_sae(copy)
    assert torch.equal(probes.weights["pitch"], ProbeSet.load(workspace.probe_dir(name)).weights["pitch"])


def test_cli_import_with_wrong_d_in_fails_with_one_line(workspace, tmp_path):
    export_saelens(random_sae(d_in=7, d_sae=14), tmp_path / "wrong")
    res = run_cli("import-sae", str(workspace.root), str(tmp_path / "wrong"), "--name", "wrong")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "d_in 7 does not match the latent dim 128" in lines[0]
    assert not workspace.sae_dir("wrong").exists()


def test_cli_export_lanes_writes_csvs_and_sv_layers(workspace, tmp_path, capsys):
    from audiosae.audio import save_audio
    from audiosae.cli import main
    from audiosae.corpus import builtin_sources

    wave = builtin_sources("tones", minutes=0.2)[0].load(24_000, 1)[:, :24_000]
    save_audio(tmp_path / "clip.wav", wave, 24_000)
    out = tmp_path / "lanes"
    name = workspace.sae_names()[0]
    code = main(["export-lanes", str(workspace.root), str(tmp_path / "clip.wav"), "--out", str(out), "--sae", name,
                 "--device", "cpu", "--quiet", "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    rows = read_rows(out / "lanes.csv")
    assert len(rows) == summary["frames"] > 0
    activations = read_rows(out / "activations.csv")
    assert len(activations) == summary["frames"] and len(activations[0]) == summary["active_features"] + 1
    for lane in SV_LANES:
        parse_sv(out / "sonic-visualiser" / f"{lane}.csv")
    assert set(SV_LANES) <= set(summary["sonic_visualiser"])
    # the session opens the clip with every lane the command wrote
    assert summary["sv_session"] == str(out / "sonic-visualiser" / SV_SESSION_FILE)
    root = ET.fromstring(bz2.decompress(Path(summary["sv_session"]).read_bytes()))
    assert set(sv_points(root)) == set(summary["sonic_visualiser"])
    assert [m.get("file") for m in root.iter("model") if m.get("type") == "wavefile"] == \
        [str((tmp_path / "clip.wav").resolve())]
