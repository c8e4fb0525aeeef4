"""Latent backends: the registry, the built-in mel backend and the EnCodec backends.

EnCodec tests hold our own model to what the pip ``encodec`` package computed for a tiny
random model (``tests/fixtures/make_encodec_fixture.py``; the package is never imported
here), and load that state dict through ``weights=``, so nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from audiosae.codecs import backend_spec, get_backend
from audiosae.codecs.encodec_backend import build_encodec_model
from audiosae.codecs.mel import FLOOR, mel_filterbank
from audiosae.errors import BackendError

SR = 24_000
HOP = 320


def harmonic_notes(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Two harmonic notes with vibrato over a little noise, ``[1, N]`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    half = n // 2
    f0 = np.where(np.arange(n) < half, 220.0, 330.0) * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wave = sum(0.5 / k * np.sin(k * phase) for k in range(1, 10))
    wave = 0.4 * wave * np.minimum(1.0, t / 0.02) + 0.01 * rng.standard_normal(n)
    return wave.astype(np.float32)[None]


def snr_db(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(truth ** 2) / np.sum((estimate - truth) ** 2)))


# ---- registry -------------------------------------------------------------------------------

def test_unknown_backend_lists_known_names():
    with pytest.raises(BackendError, match="unknown backend 'nope'") as info:
        get_backend("nope", device="cpu")
    for known in ("mel", "encodec-24k", "encodec-24k-continuous"):
        assert known in str(info.value)


def test_specs_state_the_facts():
    mel = backend_spec("mel")
    assert (mel.sample_rate, mel.channels, mel.hop_length, mel.latent_dim, mel.kind) == (SR, 1, HOP, 128, "continuous")
    assert mel.download_bytes is None and mel.frame_rate == 75.0
    for name, kind in (("encodec-24k", "discrete"), ("encodec-24k-continuous", "continuous")):
        spec = backend_spec(name)
        assert (spec.sample_rate, spec.channels, spec.hop_length, spec.latent_dim, spec.kind) == (SR, 1, HOP, 128, kind)
        assert 90e6 < spec.download_bytes < 96e6


# ---- mel ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mel():
    return get_backend("mel", device="cpu")


def test_mel_backend_matches_its_spec_and_rebuilds_from_options(mel):
    spec = backend_spec("mel")
    assert (mel.sample_rate, mel.hop_length, mel.latent_dim, mel.kind) == (spec.sample_rate, spec.hop_length,
                                                                         spec.latent_dim, spec.kind)
    rebuilt = get_backend("mel", device="cpu", **mel.options())
    assert rebuilt.options() == mel.options()


@pytest.mark.parametrize("n_samples", [1, 319, 320, 321, 4_000])
def test_mel_shapes_and_decode_length(mel, n_samples):
    wave = np.random.default_rng(n_samples).standard_normal((1, n_samples)).astype(np.float32) * 0.1
    latents = mel.encode(wave).latents
    n_frames = math.ceil(n_samples / HOP)
    assert latents.shape == (n_frames, 128) and latents.dtype == np.float32
    assert mel.n_frames(n_samples) == n_frames
    assert mel.decode(latents).shape == (1, n_frames * HOP)
    assert mel.decode(latents, reference=wave).shape == (1, n_frames * HOP)


def test_mel_filterbank_matches_librosa_slaney_without_norm():
    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(SR, 1024, 128, 0.0, 12_000.0)
    theirs = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128, fmin=0.0, fmax=12_000.0, htk=False, norm=None)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_mel_frame_t_is_centred_on_frame_centers(mel):
    n_frames, k = 20, 7
    wave = np.zeros((1, n_frames * HOP), np.float32)
    centre = mel.frame_centers(n_frames)[k] * SR
    assert centre == k * HOP + HOP / 2
    wave[0, int(centre)] = 1.0
    energy = np.exp(mel.encode(wave).latents).sum(axis=1)
    assert int(np.argmax(energy)) == k
    # Neighbours see the click at +-hop from their own centres: equal only if centred exactly.
    assert energy[k - 1] == pytest.approx(energy[k + 1], rel=1e-5)
    # One sample off centre breaks that symmetry measurably.
    wave[0] = 0.0
    wave[0, int(centre) + 1] = 1.0
    shifted = np.exp(mel.encode(wave).latents).sum(axis=1)
    assert abs(shifted[k - 1] / shifted[k + 1] - 1.0) > 1e-3


def test_mel_segmented_encode_equals_whole_encode(mel):
    wave = harmonic_notes(3.0)
    whole = mel.encode(wave).latents
    segmented = mel.encode_long(wave, segment_seconds=0.5, context_seconds=0.05)
    np.testing.assert_allclose(segmented.latents, whole, atol=1e-4)


def test_mel_sine_lands_in_its_band_and_scales_as_magnitude(mel):
    t = np.arange(SR // 2) / SR
    loud = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)[None]
    latents = mel.encode(loud).latents
    expected_band = int(np.argmin(np.abs(mel.mel_frequencies() - 1000.0)))
    assert int(np.argmax(latents[5:-5].mean(axis=0))) == expected_band
    quiet = mel.encode(loud / 2).latents
    # Magnitude mel: halving the amplitude lowers the log by ln 2 (a power mel would give 2 ln 2).
    assert np.median(latents[5:-5, expected_band] - quiet[5:-5, expected_band]) == pytest.approx(math.log(2), abs=1e-4)


def test_mel_silence_sits_at_the_floor(mel):
    latents = mel.encode(np.zeros((1, 1000), np.float32)).latents
    assert np.all(latents == np.float32(math.log(FLOOR)))


def test_mel_round_trip_with_reference_is_near_exact(mel):
    wave = harmonic_notes(1.0)
    decoded = mel.decode(mel.encode(wave).latents, reference=wave)
    assert snr_db(decoded, wave) > 40.0  # measured 75 dB


def test_mel_phase_seeding_alone_reconstructs_well():
    backend = get_backend("mel", device="cpu", reference_detail=False)
    wave = harmonic_notes(1.0)
    latents = backend.encode(wave).latents
    seeded = backend.decode(latents, reference=wave)
    assert snr_db(seeded, wave) > 9.0  # measured 15 dB on this kind of signal
    unseeded = backend.decode(latents)
    assert snr_db(unseeded, wave) < 3.0  # Griffin-Lim phase is not the original phase
    for decoded, bound in ((seeded, 0.2), (unseeded, 0.25)):  # measured 0.11 / 0.13 nats
        assert np.abs(backend.encode(decoded).latents - latents).mean() < bound


def test_mel_steering_with_reference_moves_only_the_steered_bands(mel):
    wave = harmonic_notes(1.0)
    latents = mel.encode(wave).latents
    steered = latents.copy()
    steered[:, 40:60] += math.log(4.0)
    change = mel.encode(mel.decode(steered, reference=wave)).latents - latents
    assert np.median(change[:, 40:60]) == pytest.approx(math.log(4.0), abs=0.05)
    assert np.abs(change[:, :35]).mean() < 0.05 and np.abs(change[:, 65:]).mean() < 0.05


def test_mel_chunk_with_context_matches_whole_decode(mel):
    wave = harmonic_notes(2.0)
    steered = mel.encode(wave).latents
    steered[:, 30:70] += 1.0
    whole = mel.decode(steered, reference=wave)[:, 60 * HOP:120 * HOP]
    c = mel.context_frames
    chunk = mel.decode(steered[60 - c:120 + c], reference=wave[:, (60 - c) * HOP:(120 + c) * HOP])
    chunk = chunk[:, c * HOP:(c + 60) * HOP]
    assert c == 8 and snr_db(chunk, whole) > 60.0  # measured 69 dB at 4 frames, more at 8


def test_mel_decode_is_deterministic_and_seeded(mel):
    latents = mel.encode(harmonic_notes(0.5)).latents
    first = mel.decode(latents)
    assert np.array_equal(first, mel.decode(latents))
    assert np.array_equal(first, get_backend("mel", device="cpu").decode(latents))
    assert not np.allclose(first, get_backend("mel", device="cpu", seed=1).decode(latents))


def test_mel_rejects_bad_input(mel):
    with pytest.raises(BackendError, match=r"expected a \[1, N\] wave"):
        mel.encode(np.zeros((2, 1000), np.float32))
    with pytest.raises(BackendError, match="NaN"):
        mel.encode(np.full((1, 1000), np.nan, np.float32))
    latents = mel.encode(harmonic_notes(0.2)).latents
    bad = latents.copy()
    bad[3, 5] = np.nan
    with pytest.raises(BackendError, match="NaN"):
        mel.decode(bad)
    with pytest.raises(BackendError, match=r"\[T, 128\]"):
        mel.decode(latents[:, :64])
    with pytest.raises(BackendError, match="reference"):
        mel.decode(latents, reference=np.zeros((2, 4800), np.float32))
    with pytest.raises(BackendError, match="n_fft"):
        get_backend("mel", device="cpu", n_fft=512)


# ---- EnCodec --------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY_STATE = FIXTURES / "encodec_tiny_state.safetensors"
TINY_REFERENCE = FIXTURES / "encodec_tiny_reference.safetensors"
KEYS_24K = FIXTURES / "encodec_24khz_keys.json"
# Written by the pip encodec package (tests/fixtures/make_encodec_fixture.py): a tiny causal
# model (hop 8, 100 frames/s, 4 codebooks of 16 = 0.4 kbps each) and what it computes.
TINY_ARCH = json.loads(safe_open(str(TINY_STATE), "pt").metadata()["config"])
TINY_HOP = 8
BANDWIDTHS = {0.4: 1, 0.8: 2, 1.6: 4}  # kbps -> codebooks
PARITY_ATOL = 1e-5  # float32, same ops in a different order (measured: ~2e-7)


def _bw_key(bandwidth: float) -> str:
    return f"{bandwidth * 10:.0f}"


@pytest.fixture(scope="module")
def reference():
    return load_file(str(TINY_REFERENCE))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The fixture's state dict as a ``.th`` file, the format the backend's ``weights=`` reads."""
    state = load_file(str(TINY_STATE))
    path = tmp_path_factory.mktemp("encodec") / "tiny.th"
    torch.save(state, path)
    return state, path


@pytest.fixture(scope="module")
def tiny_wave(reference):
    return reference["wave"][0].numpy()  # [1, 803]: not a multiple of the hop


def test_fixture_is_the_tiny_causal_arch():
    assert TINY_ARCH == dict(sample_rate=800, n_filters=4, dimension=16, ratios=[4, 2], lstm=2,
                             n_residual_layers=1, causal=True, n_q=4, bins=16, target_bandwidths=list(BANDWIDTHS))


def test_our_encodec_loads_the_package_state_dict_strictly_and_reproduces_it(reference):
    model = build_encodec_model(TINY_ARCH).eval()
    state = load_file(str(TINY_STATE))
    model.load_state_dict(state, strict=True)  # the package's key names, none missing or extra
    with torch.no_grad():
        for prefix, wave in (("", reference["wave"]), ("short_", reference["short_wave"])):
            emb = model.encoder(wave)
            torch.testing.assert_close(emb, reference[f"{prefix}encoder_out"], rtol=0, atol=PARITY_ATOL)
            torch.testing.assert_close(model.decoder(reference[f"{prefix}encoder_out"]),
                                       reference[f"{prefix}decoder_out"], rtol=0, atol=PARITY_ATOL)
        emb = model.encoder(reference["wave"])
        for bandwidth, n_codebooks in BANDWIDTHS.items():
            key = _bw_key(bandwidth)
            assert model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, bandwidth) == n_codebooks
            codes = model.quantizer.encode(emb, model.frame_rate, bandwidth)
            assert codes.dtype == torch.int64 and codes.shape == (n_codebooks, 1, 101)
            assert torch.equal(codes, reference[f"codes_{key}"]), bandwidth
            quantized = model.quantizer.decode(codes)
            torch.testing.assert_close(quantized, reference[f"quantized_{key}"], rtol=0, atol=PARITY_ATOL)
            torch.testing.assert_close(model.decoder(quantized), reference[f"decoded_{key}"], rtol=0, atol=PARITY_ATOL)
    # The codes are not trivially constant, so the comparison above can fail.
    assert all(len(set(row.tolist())) > 3 for row in reference["codes_16"][:, 0])


def test_our_24khz_model_has_the_released_state_dict_layout():
    recorded = json.loads(KEYS_24K.read_text(encoding="utf-8"))["state_dict"]
    ours = [{"key": k, "shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in build_encodec_model(None).state_dict().items()]
    assert [row["key"] for row in ours] == [row["key"] for row in recorded]
    assert ours == recorded
    keys = {row["key"] for row in recorded}
    assert {"encoder.model.13.lstm.weight_ih_l1", "decoder.model.1.lstm.bias_hh_l0",
            "decoder.model.12.convtr.convtr.weight_g", "quantizer.vq.layers.31._codebook.embed_avg"} <= keys


def test_encodec_geometry_follows_the_arch(tiny):
    _, path = tiny
    backend = get_backend("encodec-24k", device="cpu", arch=TINY_ARCH, weights=path)
    assert (backend.sample_rate, backend.hop_length, backend.latent_dim, backend.frame_rate) == (800, 8, 16, 100.0)
    assert backend.kind == "discrete" and backend.bandwidth == 1.6 and backend.n_codebooks == 4
    assert backend.options()["weights"] == str(path.resolve())
    rebuilt = get_backend("encodec-24k", device="cpu", **backend.options())
    assert rebuilt.options() == backend.options()


@pytest.mark.parametrize("bandwidth, n_codebooks", list(BANDWIDTHS.items()))
def test_encodec_codes_and_quantized_latents(tiny, tiny_wave, reference, bandwidth, n_codebooks):
    state, path = tiny
    backend = get_backend("encodec-24k", device="cpu", arch=TINY_ARCH, weights=path, bandwidth=bandwidth)
    assert backend.n_codebooks == n_codebooks
    encoded = backend.encode(tiny_wave)
    n_frames = math.ceil(803 / TINY_HOP)
    assert encoded.latents.shape == (n_frames, 16)
    assert encoded.codes.shape == (n_frames, n_codebooks) and encoded.codes.dtype == np.int64
    key = _bw_key(bandwidth)
    assert np.array_equal(encoded.codes, reference[f"codes_{key}"][:, 0].T.numpy())
    np.testing.assert_allclose(encoded.latents, reference[f"quantized_{key}"][0].T.numpy(), atol=PARITY_ATOL)
    codebooks = [state[f"quantizer.vq.layers.{k}._codebook.embed"] for k in range(n_codebooks)]
    summed = sum(codebooks[k][torch.from_numpy(encoded.codes[:, k])] for k in range(n_codebooks))
    np.testing.assert_allclose(encoded.latents, summed.numpy(), atol=1e-6)
    np.testing.assert_allclose(backend.latents_from_codes(encoded.codes), encoded.latents, atol=1e-6)


def test_encodec_end_to_end_from_weights_file(tiny, tiny_wave, reference):
    """wave -> codes -> latents -> wave through the backend equals the package's decode."""
    _, path = tiny
    backend = get_backend("encodec-24k", device="cpu", arch=TINY_ARCH, weights=path, bandwidth=0.8)
    codes = backend.encode(tiny_wave).codes
    wave = backend.decode(backend.latents_from_codes(codes))
    assert wave.shape == (1, 101 * TINY_HOP) and wave.dtype == np.float32
    expected = reference["decoded_8"][0, :, :101 * TINY_HOP].numpy()
    np.testing.assert_allclose(wave, expected, atol=PARITY_ATOL)
    assert np.abs(expected).max() > 1e-3  # a silent reference would prove nothing


def test_encodec_continuous_is_the_encoder_output(tiny, tiny_wave, reference):
    _, path = tiny
    backend = get_backend("encodec-24k-continuous", device="cpu", arch=TINY_ARCH, weights=path)
    encoded = backend.encode(tiny_wave)
    assert backend.kind == "continuous" and encoded.codes is None
    np.testing.assert_allclose(encoded.latents, reference["encoder_out"][0].T.numpy(), atol=PARITY_ATOL)
    short = backend.encode(reference["short_wave"][0].numpy())  # shorter than the reflect padding
    np.testing.assert_allclose(short.latents, reference["short_encoder_out"][0].T.numpy(), atol=PARITY_ATOL)


def test_encodec_decode_runs_the_decoder_on_any_vectors(tiny, reference):
    _, path = tiny
    backend = get_backend("encodec-24k", device="cpu", arch=TINY_ARCH, weights=path)
    latents = reference["encoder_out"][0].T.numpy()  # off the codebook grid
    wave = backend.decode(latents)
    assert wave.shape == (1, 101 * TINY_HOP)
    np.testing.assert_allclose(wave, reference["decoder_out"][0, :, :101 * TINY_HOP].numpy(), atol=PARITY_ATOL)


def test_encodec_strict_loading_names_missing_and_unexpected_keys(tiny, tmp_path):
    state, _ = tiny
    state = dict(state)
    removed = "decoder.model.0.conv.conv.bias"
    del state[removed]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.th"
    torch.save(state, path)
    with pytest.raises(BackendError, match="missing keys") as info:
        get_backend("encodec-24k", device="cpu", arch=TINY_ARCH, weights=path)
    assert removed in str(info.value) and "extra.weight" in str(info.value)


def test_encodec_reports_unusable_weights_and_options(tiny, tmp_path):
    _, path = tiny
    with pytest.raises(BackendError, match="does not fit the architecture"):
        get_backend("encodec-24k", device="cpu", arch={**TINY_ARCH, "dimension": 8}, weights=path)
    with pytest.raises(BackendError, match="does not match the model"):  # one LSTM layer fewer
        get_backend("encodec-24k", device="cpu", arch={**TINY_ARCH, "lstm": 1}, weights=path)
    with pytest.raises(BackendError, match="not found"):
        get_backend("encodec-24k", device="cpu", arch=TINY_ARCH, weights=tmp_path / "absent.th")
    garbage = tmp_path / "garbage.th"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendError, match="cannot read weights"):
        get_backend("encodec-24k", device="cpu", arch=TINY_ARCH, weights=garbage)
    with pytest.raises(BackendError, match="choose one of 0.4, 0.8, 1.6"):
        get_backend("encodec-24k", device="cpu", arch=TINY_ARCH, weights=path, bandwidth=6.0)
    with pytest.raises(BackendError, match="weights=PATH"):
        get_backend("encodec-24k", device="cpu", arch=TINY_ARCH)
    with pytest.raises(BackendError, match="unknown arch keys"):
        get_backend("encodec-24k", device="cpu", arch={"n_filter": 4}, weights=path)


def test_encodec_failed_download_says_how_to_load_offline(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # nothing cached
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(BackendError) as info:
        get_backend("encodec-24k", device="cpu")
    message = str(info.value)
    assert "encodec_24khz-d7cc33bc.th" in message and "weights=" in message and "unreachable" in message
