"""Parity of our WavTokenizer against outputs of the official code (``wavtokenizer_tiny.pt``).

The fixture's state dict goes through the same loader users' checkpoints go through
(``extract_state_dict`` + ``load_official_state_dict``: prefix filter, unused decoder
skipped, strict).  Every stage is then recomputed from *our own* previous stage, so an
error anywhere shows up downstream too, and compared with the recorded output.
"""

from __future__ import annotations

import torch

from ...parity import ParityRow, compare
from .configs import WavTokenizerConfig
from .model import WavTokenizerModel, extract_state_dict, load_official_state_dict


def check(fixture: dict) -> list[ParityRow]:
    """One row per recorded output: encoder_out, features, codes (exact), backbone_out,
    head_linear_out, audio_out, codes_to_features."""
    config = WavTokenizerConfig.from_dict(fixture["config"])
    model = WavTokenizerModel(config)
    load_official_state_dict(model, extract_state_dict(fixture["checkpoint"]))
    model = model.float().eval()
    bandwidth_id = int(fixture["bandwidth_id"].reshape(-1)[0])
    with torch.inference_mode():
        wav = fixture["wav"].float()
        encoder_out = model.encode_continuous(wav)
        features, codes = model.quantize(encoder_out)
        backbone_out = model.backbone(features, bandwidth_id)
        head_linear_out = model.head.out(backbone_out)
        audio_out = model.head.synthesize(head_linear_out)
        codes_to_features = model.codes_to_features(codes)
    ours = {"encoder_out": encoder_out, "features": features, "codes": codes, "backbone_out": backbone_out,
            "head_linear_out": head_linear_out, "audio_out": audio_out, "codes_to_features": codes_to_features}
    return [compare(name, value, fixture[name]) for name, value in ours.items()]
