"""Per-latent-frame acoustic labels: pitch (CREPE), loudness (windowed RMS) and timbre
(spectral centroid), in one place to import from.

Three modules hold the code, importing one way (none imports this one):

* ``audiosae.attribute_layout``: the class layout, note names, CREPE's pitch grid and band,
  ``FrameAttributes`` and the analysis-window rule;
* ``audiosae.attribute_measure``: the measuring (CREPE as ``CrepeNet``, level, centroid,
  ``measure_attributes``; how a label lines up with a latent frame);
* ``audiosae.attribute_spec``: ``AttributeSpec``, how raw values become classes.

Every public name of the three is importable from here.
"""

from __future__ import annotations

# The attributes' class layout, the spec and the measured-values container: re-exported here.
from .attribute_spec import (ATTRIBUTES, CREPE_BINS, CREPE_CENTS_BIN0, CREPE_CENTS_PER_BIN,  # noqa: F401
                             CREPE_FMAX_HZ, CREPE_FMIN_HZ, CREPE_MODELS, DEFAULT_CREPE_MODEL, DEFAULT_FMAX_HZ,
                             DEFAULT_FMIN_HZ, DEFAULT_LOUDNESS_RANGE_DB, DEFAULT_MIN_WINDOW_S,
                             DEFAULT_PERIODICITY_THRESHOLD, DEFAULT_SILENCE_DB, DEFAULT_TIMBRE_RANGE_HZ, MIDI_MAX,
                             MIDI_MIN, MIN_TIMBRE_SPAN_HZ, N_LOUDNESS_BINS, N_PITCH_CLASSES, N_TIMBRE_BINS, UNVOICED,
                             AttributeSpec, FrameAttributes, _DECODE_HALF_WIDTH, analysis_window_length,
                             clamp_crepe_band, hz_to_midi, midi_to_hz, midi_to_name, name_to_midi,
                             pitch_class_names)
from .attribute_measure import (CPU_CREPE_CALL_FRAMES, CREPE_SAMPLE_RATE, CREPE_WINDOW,  # noqa: F401
                                DEFAULT_BATCH_SIZE, LEVEL_FLOOR_DB, CrepeNet, crepe_band_bins, crepe_weights_path,
                                decode_crepe, load_crepe, measure_attributes)

__all__ = [
    "ATTRIBUTES", "UNVOICED", "MIDI_MIN", "MIDI_MAX", "N_PITCH_CLASSES", "CREPE_MODELS",
    "DEFAULT_CREPE_MODEL", "DEFAULT_PERIODICITY_THRESHOLD", "DEFAULT_SILENCE_DB",
    "DEFAULT_FMIN_HZ", "DEFAULT_FMAX_HZ", "CREPE_FMIN_HZ", "CREPE_FMAX_HZ",
    "FrameAttributes", "AttributeSpec", "measure_attributes", "analysis_window_length",
    "clamp_crepe_band", "crepe_band_bins", "CrepeNet", "crepe_weights_path", "load_crepe", "decode_crepe",
    "midi_to_name", "name_to_midi", "midi_to_hz", "hz_to_midi", "pitch_class_names",
]
