"""audiosae: the headless science core of audiosae studio.

Audio -> latent frames (a codec backend) -> acoustic attribute labels -> sparse
autoencoders -> linear probes -> control vectors.  Nothing here imports Qt; the
desktop app in ``studio/`` builds on this package, never the reverse.
"""

__version__ = "0.1.0"
