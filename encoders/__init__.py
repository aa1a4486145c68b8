"""Server-side item encoders: raw item content (texts, posters) -> frozen feature matrices.

GFMFR moves multimodal representation learning to the server, so the server encodes a dataset's
item content once, caches it on disk, and hands clients plain arrays. Entry point:
``encoders.features.item_features``; encoder names live in ``encoders.registry.ENCODERS``.

Kept free of imports on purpose: importing this package must stay cheap and must not pull torch,
sentence-transformers or open_clip into processes that never encode anything.
"""
