"""The DiffRhythm generation view, as imported before the split (issue 13): the state lives in
``studio.models.generation`` (``GenerationModel``), the view in ``studio.widgets.generation``;
a run is ``audiosae.workflows.trace.run_trace``, the one ``audiosae trace`` calls."""

from PySide6.QtWidgets import QFileDialog  # noqa: F401  (tests patch studio.generation.QFileDialog)

from .models.generation import (DECODE_CACHE_LIMIT, SOURCE_LABELS, GenerationModel, decode_job,  # noqa: F401
                                download_note, feature_stack, load_trace_job, muq_available, save_trace_job,
                                step_image)
from .widgets.generation.display import class_ticks  # noqa: F401
from .widgets.generation.view import GenerationView  # noqa: F401
