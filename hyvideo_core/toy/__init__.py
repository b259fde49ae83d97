"""The toy world: procedurally generated captioned clips, the prompt-adherence yardstick, and the
embedded default model trained on them (shared/DESIGN.md §4).

``world``: :class:`ToyWorld`, captions, held-out prompt split; ``evaluate``: :func:`score_clip`;
``python -m hyvideo_core.toy report`` prints adherence, VAE PSNR and time per clip.
"""
