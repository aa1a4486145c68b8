"""Items' content as vectors a client can rank new items with (cold start; pure numpy).

The server encodes posters and plots once; a client that receives every item's content vector
builds its own profile from the items it trained on, on the device, and ranks new items by
their cosine to it. Nothing about the user leaves the device: the server sends the same vectors
to everyone. ``docs/gfmfr.md`` ("New items") has the measurements behind each choice.
"""

from __future__ import annotations

import numpy as np

CONTENT_DIMS = 64  # what is sent; on held-out training rows as good as all 1,664 features


def content_vectors(text: np.ndarray, image: np.ndarray, image_mask: np.ndarray,
                    dims: int | None = CONTENT_DIMS, seed: int = 0) -> np.ndarray:
    """(n_items, dims) float32: text and image features, each centred over the items and scaled
    to unit length (no image term where an item has none), side by side, then reduced to their
    ``dims`` leading principal components (``None``: not reduced)."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(0)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)

    items = np.concatenate((unit(text), unit(image) * image_mask[:, None]), axis=1)
    if dims is not None and dims < min(items.shape):
        from sklearn.decomposition import PCA  # the server's side only

        items = PCA(dims, random_state=seed).fit_transform(items)
    return items.astype(np.float32)


def profile_cosine(vectors: np.ndarray, own_items: np.ndarray) -> np.ndarray:
    """(n_items,) cosine of every row to the mean of the rows of ``own_items``: how much each
    item looks like what this user has had (a content profile, kept on the device)."""
    rows = vectors.astype(np.float64)
    profile = rows[own_items].mean(axis=0)
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(profile)
    return (rows @ profile / np.maximum(norms, 1e-12)).astype(np.float32)


def standardised(scores: np.ndarray, among: np.ndarray) -> np.ndarray:
    """``scores`` shifted and scaled to mean 0 and standard deviation 1 over the ``among`` mask,
    so that scores of different scales can be added."""
    sub = scores[among].astype(np.float64)
    return ((scores - sub.mean()) / max(sub.std(), 1e-12)).astype(np.float32)
