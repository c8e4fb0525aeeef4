"""audiosae studio: the PySide6 desktop app (views, view-models, workers) over ``audiosae``."""
