"""Views: widgets that show a view-model (``studio.models``) and forward what the user does.

No torch here: views get plain values and numpy arrays from their view-models.
"""
