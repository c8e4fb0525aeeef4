"""``TrainingWizard``: audio -> backend -> attributes -> SAE grid -> run -> results.

The run step drives exactly the jobs of the CLI: ``audiosae.workflows.train.run_build``
(``audiosae build``) then ``run_train`` (``audiosae train``), in a ``JobRunner`` thread.  Both
resume from what is on disk, so "Resume" after a cancel or an error runs the same job again.
Steps 1, 3 and 4 run small side jobs (scanning audio headers, previewing the attribute bins,
timing a calibration) that never write anything.  The state is ``studio.models.wizard.WizardModel``.

``TrainingWizard.workspace_ready(path, sae_name)`` fires when the user finishes on the
results page with an SAE selected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget, QWizard

from audiosae.workflows.train import RunPlan
from audiosae.workspace import WORKSPACE_FILE

from ...models.wizard import WizardModel
from ...workers import JobRunner
from .attributes_page import AttributesPage
from .audio_page import AudioPage
from .backend_page import BackendPage
from .common import PAGE_AUDIO, PAGE_RUN
from .results_page import ResultsPage
from .run_page import RunPage
from .training_page import GridPage


class TrainingWizard(QWizard):
    """New workspace: audio, backend, attributes, SAE grid, run, results.

    ``initial_folder``: an existing workspace opens to resume it; any other folder (or file)
    of audio is added on step 1.  ``workspace_ready(path, sae_name)`` fires on Finish.
    """

    workspace_ready = Signal(str, str)

    def __init__(self, runner: JobRunner, settings: Any, parent: QWidget | None = None,
                 initial_folder: str | Path | None = None):
        super().__init__(parent)
        self.runner = runner
        self.settings = settings
        self.model = WizardModel(runner, self)
        self.setWindowTitle("New workspace \u2014 audiosae studio")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, False)
        self.setMinimumSize(920, 680)
        m = self.model
        self.audio_page = AudioPage(runner, settings, model=m.audio)
        self.backend_page = BackendPage(runner, settings, model=m)
        self.attributes_page = AttributesPage(runner, settings, model=m.preview)
        self.grid_page = GridPage(runner, settings, model=m.training)
        self.training_page = self.grid_page
        self.run_page = RunPage(runner, settings, model=m.run)
        self.results_page = ResultsPage(runner, settings)
        for page_id, page in enumerate((self.audio_page, self.backend_page, self.attributes_page,
                                        self.grid_page, self.run_page, self.results_page)):
            self.setPage(page_id, page)
        self.setStartId(PAGE_AUDIO)
        self.currentIdChanged.connect(self._sync_back_button)
        if initial_folder is not None:
            folder = Path(initial_folder).expanduser()
            if (folder / WORKSPACE_FILE).exists():
                self.setField("workspace", str(folder))
            elif folder.exists():
                self.audio_page.add_paths([folder])

    def run_plan(self) -> RunPlan:
        """The run described by the pages (what step 5 executes): ``WizardModel.run_plan``."""
        return self.model.run_plan()

    def _sync_back_button(self, page_id: int) -> None:
        # QWizard enables Back after initializePage; going back mid-run would orphan the job.
        if page_id == PAGE_RUN and self.run_page.state == "running":
            self.button(QWizard.WizardButton.BackButton).setEnabled(False)

    def cancel_side_jobs(self) -> None:
        """Stop the scan / preview / estimate jobs (the run needs the CPU)."""
        self.audio_page.cancel_jobs()
        self.attributes_page.cancel_jobs()
        self.grid_page.cancel_jobs()

    def cancel_all_jobs(self) -> None:
        self.cancel_side_jobs()
        self.run_page.cancel_jobs()

    def accept(self) -> None:
        name = self.results_page.selected_sae()
        report = self.run_page.report or {}
        if name is None or not report:
            return
        self.cancel_all_jobs()
        path = str(Path(report.get("workspace") or self.field("workspace")).expanduser().resolve())
        self.workspace_ready.emit(path, name)
        super().accept()

    def reject(self) -> None:
        self.cancel_all_jobs()
        super().reject()
