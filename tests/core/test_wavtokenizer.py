"""WavTokenizer backend: parity with the official code, checkpoint loading, shapes, hub helper.

Nothing here touches the network: models are tiny and random, saved and reloaded in the
official Lightning layout; the hub is replaced by fakes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiosae import hub
from audiosae.codecs import available_backends, backend_spec, get_backend
from audiosae.codecs.wavtokenizer import SPECS, WavTokenizerBackend
from audiosae.codecs.wavtokenizer.configs import FRAME40, FRAME75, RELEASED, WavTokenizerConfig, tiny_config
from audiosae.codecs.wavtokenizer.model import (UNUSED_PREFIX, build_random_model, load_official_state_dict,
                                                save_lightning_checkpoint)
from audiosae.errors import BackendError, JobCancelled
from audiosae.jobs import CancelToken, Progress

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "wavtokenizer_tiny.pt"
EXPECTED_ROWS = ["encoder_out", "features", "codes", "backbone_out", "head_linear_out", "audio_out",
                 "codes_to_features"]


def _fixture() -> Path:
    if not FIXTURE.is_file():
        pytest.skip(f"parity fixture {FIXTURE} is absent (it ships in the project's shared/fixtures folder)")
    return FIXTURE


# ---- parity ---------------------------------------------------------------------------------
def test_parity_cli_on_official_fixture():
    path = _fixture()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "audiosae.parity", str(path), "--json"],
                         capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["kind"] == "wavtokenizer" and report["ok"]
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == EXPECTED_ROWS
    assert rows["codes"]["exact"] is True
    for name, row in rows.items():
        assert row["max_rel"] <= 1e-4, (name, row)


def test_parity_python_api_and_loader_report():
    from audiosae.codecs.wavtokenizer.model import WavTokenizerModel, extract_state_dict
    from audiosae.codecs.wavtokenizer.parity import check

    fixture = torch.load(_fixture(), map_location="cpu", weights_only=True)
    rows = check(fixture)
    assert [r.name for r in rows] == EXPECTED_ROWS
    assert all(r.ok(1e-4) for r in rows), rows
    assert next(r for r in rows if r.name == "codes").exact is True

    model = WavTokenizerModel(WavTokenizerConfig.from_dict(fixture["config"]))
    report = load_official_state_dict(model, extract_state_dict(fixture["checkpoint"]))
    n_decoder = sum(k.startswith(UNUSED_PREFIX) for k in fixture["checkpoint"]["state_dict"])
    assert report.skipped_unused_decoder == n_decoder > 0
    assert report.loaded == len(fixture["checkpoint"]["state_dict"]) - n_decoder


# ---- tiny random model through the user path ---------------------------------------------
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> tuple[Path, object]:
    model = build_random_model(tiny_config(), seed=1)
    path = tmp_path_factory.mktemp("wt") / "tiny.ckpt"
    extra = {"multiperioddisc.discriminators.0.convs.0.weight": torch.randn(4, 1, 5),
             "melspec_loss.mel_spec.window": torch.ones(8),
             UNUSED_PREFIX + "model.0.conv.conv.weight_g": torch.ones(2, 1, 1)}
    save_lightning_checkpoint(model, path, extra_state=extra)
    return path, model


def test_lightning_checkpoint_loads_through_get_backend(tiny_ckpt):
    path, model = tiny_ckpt
    backend = get_backend("wavtokenizer-40", device="cpu", config=tiny_config(), weights=path)
    assert isinstance(backend, WavTokenizerBackend)
    assert (backend.name, backend.kind, backend.hop_length, backend.latent_dim) == ("wavtokenizer-40", "discrete", 4, 512)
    # the weights really came from the file: outputs equal the model that was saved
    wave = np.random.default_rng(0).standard_normal(203).astype(np.float32) * 0.3
    with torch.inference_mode():
        ref_feat, ref_codes = model.encode(torch.from_numpy(wave)[None])
    enc = backend.encode(wave[None])
    assert enc.latents.shape == (51, 512) and enc.latents.dtype == np.float32  # ceil(203 / 4)
    assert enc.codes.shape == (51, 1) and enc.codes.dtype == np.int64
    np.testing.assert_array_equal(enc.codes[:, 0], ref_codes[0, 0].numpy())
    np.testing.assert_allclose(enc.latents, ref_feat[0].T.numpy(), rtol=0, atol=1e-6)
    assert len(np.unique(enc.codes)) > 1
    # discrete latents are codebook rows, and codes_to_latents agrees
    book = model.quantizer.codebook.numpy()
    np.testing.assert_array_equal(enc.latents, book[enc.codes[:, 0]])
    np.testing.assert_array_equal(backend.codes_to_latents(enc.codes), enc.latents)

    audio = backend.decode(enc.latents)
    assert audio.shape == (1, 51 * 4) and audio.dtype == np.float32 and np.all(np.isfinite(audio))
    with torch.inference_mode():
        ref_audio = model.decode(ref_feat)[0].numpy()
    np.testing.assert_allclose(audio[0], ref_audio, rtol=0, atol=1e-5 * max(1.0, np.abs(ref_audio).max()))
    assert backend.options() == {"model": "small-600-24k-4096", "continuous": False, "weights": str(path),
                                 "config": tiny_config().to_dict()}


def test_continuous_variant_and_options_round_trip(tiny_ckpt):
    path, model = tiny_ckpt
    cont = get_backend("wavtokenizer-40-continuous", device="cpu", config=tiny_config().to_dict(), weights=path)
    assert cont.kind == "continuous" and cont.name == "wavtokenizer-40-continuous"
    wave = np.sin(np.linspace(0, 60, 97, dtype=np.float32))[None] * 0.5
    enc = cont.encode(wave)
    assert enc.codes is None and enc.latents.shape == (25, 512)
    with torch.inference_mode():
        ref = model.encode_continuous(torch.from_numpy(wave))[0].T.numpy()
    np.testing.assert_allclose(enc.latents, ref, rtol=0, atol=1e-6)
    assert cont.decode(enc.latents).shape == (1, 100)
    rebuilt = get_backend(cont.name, device="cpu", **cont.options())
    np.testing.assert_array_equal(rebuilt.encode(wave).latents, enc.latents)


@pytest.mark.parametrize("n_samples", [1, 3, 4, 5, 9])
def test_frame_count_is_ceil_of_length_over_hop(tiny_ckpt, n_samples):
    path, _ = tiny_ckpt
    backend = get_backend("wavtokenizer-40", device="cpu", config=tiny_config(), weights=path)
    enc = backend.encode(np.full((1, n_samples), 0.1, np.float32))
    assert enc.latents.shape[0] == backend.n_frames(n_samples) == -(-n_samples // 4)


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path, tiny_ckpt):
    _, model = tiny_ckpt
    state = dict(model.state_dict())
    state.pop("backbone.convnext.0.gamma")
    state["backbone.convnext.7.gamma"] = torch.ones(32)
    path = tmp_path / "broken.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(BackendError) as err:
        get_backend("wavtokenizer-40", device="cpu", config=tiny_config(), weights=path)
    msg = str(err.value)
    assert "missing key(s): backbone.convnext.0.gamma" in msg
    assert "unexpected key(s): backbone.convnext.7.gamma" in msg
    assert str(path) in msg and "\n" not in msg


def test_wrong_config_is_reported_by_shape(tiny_ckpt):
    path, _ = tiny_ckpt
    wider = WavTokenizerConfig.from_dict({**tiny_config().to_dict(), "vq_bins": 32})
    with pytest.raises(BackendError, match=r"wrong shapes: .*_codebook\.(cluster_size|embed)"):
        get_backend("wavtokenizer-40", device="cpu", config=wider, weights=path)


def test_untrained_codebook_is_refused(tmp_path):
    model = build_random_model(tiny_config())
    model.quantizer.vq.layers[0]._codebook.inited.zero_()
    path = save_lightning_checkpoint(model, tmp_path / "fresh.ckpt")
    with pytest.raises(BackendError, match="never initialised"):
        get_backend("wavtokenizer-40", device="cpu", config=tiny_config(), weights=path)


def test_missing_weights_file_and_custom_config_without_weights(tmp_path):
    with pytest.raises(BackendError, match=r"weights file not found; download WavTokenizer_small_600_24k_4096\.ckpt "
                                           r"from https://huggingface\.co/novateur/WavTokenizer and pass --weights"):
        get_backend("wavtokenizer-40", device="cpu", weights=tmp_path / "nope.ckpt")
    with pytest.raises(BackendError, match="custom config needs weights"):
        get_backend("wavtokenizer-40", device="cpu", config=tiny_config())


def test_decode_rejects_wrong_width(tiny_ckpt):
    path, _ = tiny_ckpt
    backend = get_backend("wavtokenizer-40", device="cpu", config=tiny_config(), weights=path)
    with pytest.raises(BackendError, match=r"\[T, 512\]"):
        backend.decode(np.zeros((5, 128), np.float32))
    with pytest.raises(BackendError, match="codes must lie in"):
        backend.codes_to_latents(np.array([[16]]))


# ---- registry and configs -----------------------------------------------------------------
def test_registered_specs_match_released_configs():
    names = {s.name for s in available_backends()}
    expected = {"wavtokenizer-40", "wavtokenizer-75", "wavtokenizer-medium-speech-75",
                "wavtokenizer-large-unify-40", "wavtokenizer-large-speech-75"}
    assert expected | {n + "-continuous" for n in expected} <= names
    assert len(SPECS) == 10
    s40, s75 = backend_spec("wavtokenizer-40"), backend_spec("wavtokenizer-75-continuous")
    assert (s40.hop_length, s40.frame_rate, s40.kind, s40.latent_dim, s40.sample_rate) == (600, 40.0, "discrete", 512, 24000)
    assert (s75.hop_length, s75.frame_rate, s75.kind) == (320, 75.0, "continuous")
    for spec in SPECS:
        released = RELEASED[spec.default_options["model"]]
        assert spec.hop_length == released.config.head.hop_length == released.config.hop_length
        assert spec.download_bytes and spec.download_bytes > 1_000_000_000
    assert FRAME40.head.n_fft == 4 * FRAME40.hop_length and FRAME75.head.n_fft == 4 * FRAME75.hop_length


def test_full_size_model_structure_on_meta_device():
    from audiosae.codecs.wavtokenizer.model import WavTokenizerModel, count_parameters

    with torch.device("meta"):
        m40, m75 = WavTokenizerModel(FRAME40), WavTokenizerModel(FRAME75)
    sd = m40.state_dict()
    # strides 4,5,5,6 (YAML [6,5,5,4] reversed): kernels are 2x the stride
    assert [tuple(sd[f"feature_extractor.encodec.encoder.model.{i}.conv.conv.weight_v"].shape)[2]
            for i in (3, 6, 9, 12)] == [8, 10, 10, 12]
    assert tuple(sd["feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed"].shape) == (4096, 512)
    assert tuple(sd["head.out.weight"].shape) == (2402, 768) and len(m40.backbone.convnext) == 12
    assert 70e6 < count_parameters(m40) < 75e6 and count_parameters(m75) < count_parameters(m40)


def test_config_validation():
    with pytest.raises(BackendError, match="encoder hop 4 != head hop_length 8"):
        WavTokenizerConfig.from_dict({**tiny_config().to_dict(), "head": {"dim": 32, "n_fft": 16, "hop_length": 8}})
    assert WavTokenizerConfig.from_dict(tiny_config().to_dict()) == tiny_config()


# ---- hub helper (no network: the hub is faked) ----------------------------------------------
def _no_network(*_args, **_kwargs):
    raise AssertionError("the network was touched")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """hf_hub_download writes ``payload`` in 3 chunks through the given tqdm class."""
    import huggingface_hub

    state = {"payload": b"x" * 3000, "info": None, "calls": 0}

    def fake_download(repo_id, filename, *, revision=None, tqdm_class=None, **_):
        state["calls"] += 1
        bar = tqdm_class(total=len(state["payload"]), initial=0, desc=filename, unit="B") if tqdm_class else None
        out = tmp_path / "cache" / filename
        out.parent.mkdir(exist_ok=True)
        with out.open("wb") as fh:
            for i in range(0, len(state["payload"]), 1000):
                chunk = state["payload"][i:i + 1000]
                fh.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        return str(out)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(hub, "hub_file_info", lambda *a, **k: state["info"])
    return state


def test_local_path_short_circuits_the_hub(monkeypatch, tmp_path):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _no_network)
    monkeypatch.setattr(hub, "hub_file_info", _no_network)
    weights = tmp_path / "w.ckpt"
    weights.write_bytes(b"abc")
    assert hub.download_hub_file("org/repo", "w.ckpt", local_path=weights) == weights
    with pytest.raises(BackendError, match=r"weights path is not a file; download w\.ckpt from "
                                           r"https://huggingface\.co/org/repo and pass --weights PATH"):
        hub.download_hub_file("org/repo", "w.ckpt", local_path=tmp_path)
    with pytest.raises(BackendError, match="is 3 bytes, expected 4"):
        hub.download_hub_file("org/repo", "w.ckpt", local_path=weights, expected_size=4)


def test_download_reports_byte_progress_and_verifies(fake_hub):
    payload = fake_hub["payload"]
    fake_hub["info"] = hub.HubFileInfo(size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    events: list[Progress] = []
    path = hub.download_hub_file("org/repo", "m.ckpt", progress=events.append)
    assert path.read_bytes() == payload
    downloads = [e.done for e in events if e.stage == "download"]
    assert downloads[:4] == [0, 1000, 2000, 3000] and all(e.total == 3000 for e in events if e.stage == "download")
    assert any(e.stage == "verify" and e.done == e.total == 3000 for e in events)


def test_download_size_and_sha_mismatch(fake_hub):
    fake_hub["info"] = hub.HubFileInfo(size=2999, sha256=None)
    with pytest.raises(BackendError, match=r"is 3000 bytes, expected 2999; delete it .* --weights PATH"):
        hub.download_hub_file("org/repo", "m.ckpt")
    fake_hub["info"] = None  # offline: nothing from the hub, but the caller knows the hash
    with pytest.raises(BackendError, match="has sha256 .*, expected 000000000000"):
        hub.download_hub_file("org/repo", "m.ckpt", expected_sha256="0" * 64)
    good = hashlib.sha256(fake_hub["payload"]).hexdigest()
    assert hub.download_hub_file("org/repo", "m.ckpt", expected_sha256=good, expected_size=3000).is_file()


def test_download_cancel_stops_the_transfer(fake_hub):
    token = CancelToken()
    seen: list[float] = []

    def sink(event: Progress) -> None:
        seen.append(event.done)
        if event.done >= 1000:
            token.cancel()

    with pytest.raises(JobCancelled):
        hub.download_hub_file("org/repo", "m.ckpt", progress=sink, cancel=token)
    assert max(seen) == 1000  # the second chunk was refused
    token2 = CancelToken()
    token2.cancel()
    calls = fake_hub["calls"]
    with pytest.raises(JobCancelled):
        hub.download_hub_file("org/repo", "m.ckpt", cancel=token2)
    assert fake_hub["calls"] == calls  # cancelled before any transfer


def test_download_failure_says_what_to_do(monkeypatch):
    import huggingface_hub

    def offline(*_a, **_k):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the hub and the file is not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(hub, "hub_file_info", lambda *a, **k: None)
    with pytest.raises(BackendError) as err:
        hub.download_hub_file("novateur/WavTokenizer", "WavTokenizer_small_600_24k_4096.ckpt")
    msg = str(err.value)
    assert "not cached" in msg and "pass --weights PATH" in msg and "https://huggingface.co/novateur/WavTokenizer" in msg

    def absent(*_a, **_k):
        raise huggingface_hub.errors.EntryNotFoundError("404")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", absent)
    with pytest.raises(BackendError, match=r"^x\.ckpt not found in https://huggingface\.co/org/repo"):
        hub.download_hub_file("org/repo", "x.ckpt")


def test_hub_file_size_offline_is_none_and_online_reads_metadata(monkeypatch):
    import huggingface_hub
    from huggingface_hub.hf_api import RepoFile

    def offline(self, *a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", offline)
    assert hub.hub_file_size("org/repo", "m.ckpt") is None

    def answer(self, repo_id, paths, revision=None, **_):
        return [RepoFile(path="m.ckpt", size=1234, oid="abc",
                         lfs={"size": 1234, "oid": "f" * 64, "pointerSize": 130})]

    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", answer)
    assert hub.hub_file_size("org/repo", "m.ckpt") == 1234
    assert hub.hub_file_info("org/repo", "m.ckpt").sha256 == "f" * 64
    with pytest.raises(BackendError, match="other.ckpt not found in https://huggingface.co/org/repo"):
        hub.hub_file_size("org/repo", "other.ckpt")


class _Evil:  # any non-tensor class: weights_only loading must refuse it
    pass


def test_load_checkpoint_errors(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"a": torch.ones(2)}, "epoch": 3}, good)
    assert torch.equal(hub.load_checkpoint(good, key="state_dict")["a"], torch.ones(2))
    with pytest.raises(BackendError, match=r"no 'model' entry \(found: state_dict, epoch\)"):
        hub.load_checkpoint(good, key="model")

    evil = tmp_path / "evil.pt"
    torch.save({"obj": _Evil()}, evil)
    with pytest.raises(BackendError, match="refused to load: the file holds pickled Python objects"):
        hub.load_checkpoint(evil)

    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(BackendError, match="not a readable PyTorch checkpoint"):
        hub.load_checkpoint(truncated)

    legacy = tmp_path / "legacy.pt"
    torch.save({"a": torch.arange(3)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(hub.load_checkpoint(legacy)["a"], torch.arange(3))

    with pytest.raises(BackendError, match="checkpoint file not found"):
        hub.load_checkpoint(tmp_path / "none.pt")
