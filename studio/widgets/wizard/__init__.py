"""The training wizard's views, one module per page, and ``TrainingWizard`` that holds them.

State and jobs live in ``studio.models.wizard``; the pages read and write it.
"""
