"""Typed configurations of the released WavTokenizer models.

Values are facts read from the official YAML files (jishengpeng/WavTokenizer @ 5cf440d,
``configs/wavtokenizer_smalldata_frame{40,75}_3s_nq1_code4096_dim512_kmeans200_attn.yaml``,
and the hub's ``wavtokenizer_mediumdata_frame75_…yaml``).  The large hub repos ship no YAML;
their authors point at the frame40 / frame75 files, whose inference structure they share.

Only what inference needs is kept: the SEANet encoder (its widths are fixed inside the
official ``EncodecFeatures``), the single 512-d VQ codebook, the Vocos backbone and the
ISTFT head.  Training-only settings (k-means iterations, EMA decay, bandwidth list) are not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ...errors import BackendError

SAMPLE_RATE = 24000
CODEBOOK_DIM = 512  # hard-coded in the official EncodecFeatures


@dataclass(frozen=True)
class EncoderConfig:
    """SEANet encoder (non-causal, weight-normed, reflect padding, ELU, 2-layer LSTM).

    ``downsamples`` is given in the YAML order (``dowmsamples``); like EnCodec's SEANet the
    encoder applies the strides in *reverse* order ([6,5,5,4] -> strides 4,5,5,6).
    """

    downsamples: tuple[int, ...] = (6, 5, 5, 4)
    n_filters: int = 32
    dimension: int = CODEBOOK_DIM
    lstm_layers: int = 2
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    compress: int = 2

    @property
    def hop_length(self) -> int:
        return math.prod(self.downsamples)


@dataclass(frozen=True)
class BackboneConfig:
    """Vocos backbone: embed conv, pos_net (ResNet + attention), AdaLayerNorm'd ConvNeXt blocks."""

    input_channels: int = CODEBOOK_DIM
    dim: int = 768
    intermediate_dim: int = 2304
    num_layers: int = 12
    adanorm_num_embeddings: int = 4


@dataclass(frozen=True)
class HeadConfig:
    """ISTFT head with 'same' padding; ``hop_length`` must equal the encoder hop."""

    dim: int = 768
    n_fft: int = 2400
    hop_length: int = 600
    padding: str = "same"


@dataclass(frozen=True)
class WavTokenizerConfig:
    """Everything needed to build a WavTokenizer model for inference."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    vq_bins: int = 4096
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        self.validate()

    @property
    def hop_length(self) -> int:
        return self.encoder.hop_length

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def latent_dim(self) -> int:
        return self.encoder.dimension

    def validate(self) -> None:
        """Raise ``BackendError`` for a configuration the official code could not run either."""
        problems = []
        if self.encoder.hop_length != self.head.hop_length:
            problems.append(f"encoder hop {self.encoder.hop_length} != head hop_length {self.head.hop_length}")
        if self.backbone.input_channels != self.encoder.dimension:
            problems.append(f"backbone input_channels {self.backbone.input_channels} != "
                            f"encoder dimension {self.encoder.dimension}")
        if self.head.dim != self.backbone.dim:
            problems.append(f"head dim {self.head.dim} != backbone dim {self.backbone.dim}")
        if self.backbone.dim % 32:
            problems.append(f"backbone dim {self.backbone.dim} is not a multiple of 32 (GroupNorm(32))")
        if self.head.padding != "same":
            problems.append(f"head padding {self.head.padding!r} (only 'same' is released)")
        if self.head.n_fft < self.head.hop_length or (self.head.n_fft - self.head.hop_length) % 2:
            problems.append(f"n_fft {self.head.n_fft} - hop {self.head.hop_length} must be even and >= 0")
        if self.backbone.adanorm_num_embeddings < 1:
            problems.append("adanorm_num_embeddings must be >= 1")
        if self.vq_bins < 1:
            problems.append("vq_bins must be >= 1")
        if problems:
            raise BackendError("invalid WavTokenizer config: " + "; ".join(problems))

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``from_dict`` reads it back."""
        data = asdict(self)
        data["encoder"]["downsamples"] = list(self.encoder.downsamples)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WavTokenizerConfig":
        """Read ``to_dict`` output, or the official constructor arguments.

        The official form is what the YAML's ``model.init_args`` (and the parity fixture's
        ``config``) hold: ``feature_extractor`` (``dowmsamples``, ``vq_bins``, ...),
        ``backbone`` and ``head`` dicts of constructor keyword arguments.
        """
        if isinstance(data, WavTokenizerConfig):
            return data
        try:
            if "feature_extractor" in data:
                return cls._from_official(data)
            enc = dict(data.get("encoder", {}))
            if "downsamples" in enc:
                enc["downsamples"] = tuple(int(r) for r in enc["downsamples"])
            return cls(encoder=EncoderConfig(**enc), vq_bins=int(data.get("vq_bins", 4096)),
                       backbone=BackboneConfig(**dict(data.get("backbone", {}))),
                       head=HeadConfig(**dict(data.get("head", {}))),
                       sample_rate=int(data.get("sample_rate", SAMPLE_RATE)))
        except (TypeError, ValueError) as exc:
            raise BackendError(f"invalid WavTokenizer config: {exc}") from None

    @classmethod
    def _from_official(cls, data: Mapping[str, Any]) -> "WavTokenizerConfig":
        fe = dict(data["feature_extractor"])
        if fe.get("encodec_model", "encodec_24khz") != "encodec_24khz":
            raise BackendError(f"unsupported encodec_model {fe['encodec_model']!r} (only 'encodec_24khz')")
        if int(fe.get("num_quantizers", 1)) != 1:
            raise BackendError("only num_quantizers=1 is supported (the official inference uses one)")
        bb = dict(data["backbone"])
        bb.pop("layer_scale_init_value", None)  # init-time only; the trained gamma is loaded
        head = dict(data["head"])
        return cls(encoder=EncoderConfig(downsamples=tuple(int(r) for r in fe.get("dowmsamples", (6, 5, 5, 4)))),
                   vq_bins=int(fe.get("vq_bins", 16384)),
                   backbone=BackboneConfig(**bb), head=HeadConfig(**head),
                   sample_rate=int(data.get("sample_rate", data.get("sample_rate_nominal", SAMPLE_RATE))))


def _small_config(downsamples: tuple[int, ...], n_fft: int, hop: int) -> WavTokenizerConfig:
    return WavTokenizerConfig(encoder=EncoderConfig(downsamples=downsamples), vq_bins=4096,
                              backbone=BackboneConfig(), head=HeadConfig(dim=768, n_fft=n_fft, hop_length=hop))


FRAME40 = _small_config((6, 5, 5, 4), 2400, 600)
"""``wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.yaml``: 40 frames/s."""
FRAME75 = _small_config((8, 5, 4, 2), 1280, 320)
"""``wavtokenizer_smalldata_frame75_…`` (and the medium YAML, identical model): 75 frames/s."""


@dataclass(frozen=True)
class ReleasedModel:
    """A released checkpoint on the Hugging Face hub and the config that builds it."""

    key: str
    repo_id: str
    filename: str
    approx_size_bytes: int  # from the hub's file page (shown rounded to 10 MB); the exact size comes from hub metadata
    config: WavTokenizerConfig
    training_data: str
    yaml_name: str

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"


RELEASED: dict[str, ReleasedModel] = {m.key: m for m in (
    ReleasedModel("small-600-24k-4096", "novateur/WavTokenizer", "WavTokenizer_small_600_24k_4096.ckpt",
                  1_590_000_000, FRAME40, "LibriTTS speech",
                  "wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.yaml"),
    ReleasedModel("small-320-24k-4096", "novateur/WavTokenizer", "WavTokenizer_small_320_24k_4096.ckpt",
                  1_580_000_000, FRAME75, "LibriTTS speech",
                  "wavtokenizer_smalldata_frame75_3s_nq1_code4096_dim512_kmeans200_attn.yaml"),
    ReleasedModel("medium-speech-75token", "novateur/WavTokenizer-medium-speech-75token",
                  "wavtokenizer_medium_speech_320_24k_v2.ckpt", 1_750_000_000, FRAME75,
                  "10k hours of speech, audio and music",
                  "wavtokenizer_mediumdata_frame75_3s_nq1_code4096_dim512_kmeans200_attn.yaml"),
    ReleasedModel("large-unify-40token", "novateur/WavTokenizer-large-unify-40token",
                  "wavtokenizer_large_unify_600_24k.ckpt", 1_760_000_000, FRAME40,
                  "80k hours of speech, audio and music",
                  "wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.yaml"),
    ReleasedModel("large-speech-75token", "novateur/WavTokenizer-large-speech-75token",
                  "wavtokenizer_large_speech_320_v2.ckpt", 1_750_000_000, FRAME75,
                  "80k hours of speech, audio and music",
                  "wavtokenizer_smalldata_frame75_3s_nq1_code4096_dim512_kmeans200_attn.yaml"),
)}


def released_model(key: str) -> ReleasedModel:
    try:
        return RELEASED[key]
    except KeyError:
        raise BackendError(f"unknown WavTokenizer model {key!r}; known: {', '.join(RELEASED)}") from None


def tiny_config() -> WavTokenizerConfig:
    """The shape of the parity fixture's model (hop 4, 16 codes, 32-d backbone): for tests."""
    return WavTokenizerConfig(encoder=EncoderConfig(downsamples=(2, 2)), vq_bins=16,
                              backbone=BackboneConfig(dim=32, intermediate_dim=64, num_layers=1),
                              head=HeadConfig(dim=32, n_fft=16, hop_length=4))
