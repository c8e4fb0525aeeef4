"""Workflows: the jobs that the CLI and the studio both run, as plain functions.

A workflow takes a typed request, a progress sink and a cancel token (``audiosae.jobs``), and
returns a plain result.  ``audiosae.cli`` only turns arguments into requests and prints what
comes back; the studio's view-models build the same requests from what the
user chose.  Neither resolves a default itself: ``train.train_settings`` is the one place
``audiosae.defaults`` becomes a ``TrainSettings``.

- ``train``: ``BuildRequest`` / ``run_build`` (``audiosae build``), ``TrainRequest`` /
  ``run_train`` (``audiosae train``), ``RunPlan`` / ``build_and_train`` (the wizard's run).
- ``audio_plan``: what a run will read before it runs: ``AudioChoice``, header scans, the
  attribute preview, what a workspace folder holds.
- ``train_plan``: the time estimate before training (calibration on this machine and its
  extrapolation to the corpus) and its wording.
- ``trace``: ``TraceRequest`` / ``run_trace`` (``audiosae trace --prompt`` and the studio's
  generation view), ``TraceBatchRequest`` / ``run_trace_batch`` (``--prompts``).
- ``steer``: ``SteerRequest`` / ``run_steer`` (``audiosae steer``, the demo's example and the
  audition's export, rendered as heard) and ``write_steered_audio``, the one steered-file writer.
- ``evaluate``: ``EvaluateRequest`` / ``run_evaluate`` (``audiosae steer-eval``).
- ``export``: SAELens export/import, a clip's lanes and Sonic Visualiser layers;
  ``describe``: feature descriptions and the Neuronpedia-style export; ``demo``: ``audiosae demo``.

Nothing here imports Qt.
"""
