"""The training wizard (kept as an import path): the views are ``studio.widgets.wizard``, the
state and jobs ``studio.models.wizard``, the Qt-free planning ``audiosae.workflows``."""

from __future__ import annotations

from audiosae.workflows.audio_plan import (AttributePreview, AudioChoice, ScanOutcome, WorkspaceStatus,
                                           inspect_workspace_folder, preview_attributes, scan_paths)
from audiosae.workflows.train import RunPlan, build_and_train
from audiosae.workflows.train_plan import (Calibration, Estimate, calibrate, describe_estimate, estimate_run,
                                           format_download, format_duration, time_extraction, time_probe_epoch,
                                           time_sae_steps)

from .models.wizard import WIDTH_CHOICES, WizardModel
from .widgets.wizard.attributes_page import AttributesPage
from .widgets.wizard.audio_page import AudioPage
from .widgets.wizard.backend_page import BackendPage
from .widgets.wizard.common import (PAGE_ATTRIBUTES, PAGE_AUDIO, PAGE_BACKEND, PAGE_GRID, PAGE_RESULTS, PAGE_RUN,
                                    PAGE_TRAINING)
from .widgets.wizard.results_page import ResultsPage
from .widgets.wizard.run_page import RunPage
from .widgets.wizard.training_page import GridPage
from .widgets.wizard.wizard import TrainingWizard

__all__ = [
    "AttributePreview", "AudioChoice", "ScanOutcome", "WorkspaceStatus", "inspect_workspace_folder",
    "preview_attributes", "scan_paths", "RunPlan", "build_and_train", "Calibration", "Estimate", "calibrate",
    "describe_estimate", "estimate_run", "format_download", "format_duration", "time_extraction",
    "time_probe_epoch", "time_sae_steps", "WIDTH_CHOICES", "WizardModel", "AttributesPage", "AudioPage",
    "BackendPage", "PAGE_ATTRIBUTES", "PAGE_AUDIO", "PAGE_BACKEND", "PAGE_GRID", "PAGE_RESULTS", "PAGE_RUN",
    "PAGE_TRAINING", "ResultsPage", "RunPage", "GridPage", "TrainingWizard",
]
