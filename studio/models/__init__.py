"""View-models: QObjects that hold the studio's state and start its jobs (no QtWidgets here).

Views (``studio.widgets``) show a view-model and forward what the user does to it; the jobs
they start are ``audiosae.workflows`` functions, the ones the CLI runs.
"""
