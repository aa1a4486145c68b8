"""Interaction datasets with item content, behind one registry (see ``datasets.registry``).

Kept free of imports on purpose: this top-level name shadows Hugging Face ``datasets``, which
``transformers`` probes at import time, so importing anything here could start an import cycle.
"""
