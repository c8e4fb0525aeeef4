"""The DiffRhythm generation view (``GenerationView``): ``form`` (the left column), ``display``
(the state slider, feature image, lanes and s_t curves) and ``view`` (the two, drawing
``studio.models.generation.GenerationModel``)."""

from .view import GenerationView

__all__ = ["GenerationView"]
