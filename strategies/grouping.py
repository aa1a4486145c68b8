"""Grouping clients by their uploaded prediction functions (GFMFR step 3; numpy/sklearn/scipy).

Clients are described by a vector per client, standardised per dimension, optionally scaled to
unit length, optionally reduced by PCA to 95% of the variance, and clustered into K groups by
spectral clustering (RBF affinity, median heuristic, the reference code's default) or k-means
(the paper's text). Labels are aligned with the previous round's by the Hungarian algorithm on
member overlap, so group ids stay stable.

Unit length (not in the spec) groups clients by the direction of their prediction function, not
its magnitude, which mostly reflects how much a client trained: on ml-100k-mm the row norms
correlate 0.77 with the number of local examples, and without it spectral clustering put 934 of
943 clients in one group (sizes 934/6/1/1/1); with it, 293/217/182/163/88. On the synthetic taste
groups it also recovers the truth slightly better (ARI 0.72 vs 0.69 spectral, 0.82 vs 0.80
k-means). ``grouping-normalize = false`` restores the spec.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse.linalg
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from strategies.protocol import ROWS

# Past this many clients spectral clustering works from LANDMARKS sampled clients (Nystrom)
# instead of the n x n float32 affinity (400 MB at 10,000 clients, 40 GB at 100,000).
DENSE_LIMIT = 10_000
LANDMARKS = 500


def describe_clients(uploads: dict[int, dict[str, np.ndarray]], names: tuple[str, ...]
                     ) -> tuple[list[int], np.ndarray]:
    """``(users, Z)``: one row per user, the named uploaded parameters flattened and joined."""
    users = sorted(uploads)
    sizes = [np.size(uploads[users[0]][n]) for n in names] if users else []
    z = np.empty((len(users), sum(sizes)), dtype=np.float32)  # float32: half the memory
    for row, user in zip(z, users, strict=True):  # filled in place: one copy of 200 MB at ml-1m
        start = 0
        for name, size in zip(names, sizes, strict=True):
            row[start:start + size] = np.ravel(uploads[user][name])
            start += size
    return users, z


def change_summary(change: np.ndarray) -> np.ndarray:
    """A client's grouping descriptor when its head stays private: the column sums of the change
    it made to the item table (a d-vector along its private head's direction). Under secure
    aggregation the client computes it, otherwise the server from the upload: the same sum."""
    return change.sum(axis=0, dtype=np.float32)


def table_change_summary(uploads: dict[int, dict[str, np.ndarray]], table: str,
                         sent: np.ndarray) -> tuple[list[int], np.ndarray]:
    """``(users, Z)``: every uploader's ``change_summary``."""
    users = sorted(uploads)
    rows = [change_summary(uploads[u][table] - _rows(sent, uploads[u].get(table + ROWS)))
            for u in users]
    return users, np.asarray(rows, dtype=np.float32)


def _rows(table: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
    """``table`` at ``ids`` (an upload holding only the rows it changed), or whole."""
    return table if ids is None else table[ids]


def cluster(z: np.ndarray, k: int, method: str, pca: bool, seed: int,
            normalize: bool = True, dense_limit: int = DENSE_LIMIT) -> np.ndarray:
    """Labels in ``0..k-1`` for the rows of ``z`` (fewer rows than k: one group each).

    Spectral grouping of more than ``dense_limit`` clients takes the landmark path.

    ``pca`` applies to k-means only. Spectral clustering sees the clients through their pairwise
    distances alone, and those of the whole standardised descriptors come from one Gram product;
    PCA to 95% first would change them by the discarded 5% and needs the Gram matrix's full
    eigendecomposition (22 s of a 6,040-client round on ml-1m-mm). On recorded FedRAP uploads the
    groups agree with the PCA path's (docs/performance.md, "Grouping at ml-1m scale").
    """
    n = z.shape[0]
    if n <= k:
        return np.arange(n)
    x = standardize(z)
    if normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if method == "kmeans":
        if pca and min(x.shape) > 2:
            x = pca_scores(x, 0.95)
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    if method == "spectral":
        if n > dense_limit:
            return nystrom_spectral_labels(x, k, seed)
        return spectral_labels(rbf_affinity(x), k, seed)
    raise ValueError(f"unknown grouping method {method!r}; choose spectral or kmeans")


def pca_scores(x: np.ndarray, variance: float) -> np.ndarray:
    """Principal-component scores keeping ``variance`` of the total (as sklearn's PCA, up to sign).

    Clients are far fewer than parameters (943 x 8,321 for FedRAP on ml-100k-mm), so this
    diagonalises the clients' Gram matrix instead of the data: 0.15 s instead of 1.5-3 s for a
    full SVD on one core. The eigendecomposition in float32 (LAPACK's divide and conquer) takes
    45 instead of 63 ms on ml-100k-mm and keeps the same components.
    """
    if x.shape[0] >= x.shape[1]:
        return PCA(n_components=variance, svd_solver="full").fit_transform(x)
    centred = (x - x.mean(axis=0)).astype(np.float32)
    eigenvalues, vectors = scipy.linalg.eigh(centred @ centred.T, driver="evd",
                                             check_finite=False)
    eigenvalues = np.clip(eigenvalues[::-1].astype(np.float64), 0, None)
    vectors = vectors[:, ::-1]
    kept = int(np.searchsorted(np.cumsum(eigenvalues) / eigenvalues.sum(), variance) + 1)
    return vectors[:, :kept] * np.sqrt(eigenvalues[:kept])


def standardize(z: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (sklearn's StandardScaler: a constant column becomes
    0), in float32 with float64 means: a third of StandardScaler's time on 6,040 x 8,321.
    Columns with a non-finite value (a diverged upload) are dropped."""
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite columns are dropped below
        x = np.asarray(z, dtype=np.float32) - np.mean(z, axis=0, dtype=np.float64).astype(np.float32)
        std = np.sqrt(np.einsum("ij,ij->j", x, x) / len(x))
        std[std == 0] = 1.0
        x /= std
    finite = np.isfinite(x).all(axis=0)
    return x if finite.all() else x[:, finite]


def spectral_labels(affinity: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Normalised spectral clustering (Ng, Jordan and Weiss; sklearn's SpectralClustering with
    ``assign_labels="kmeans"``): k-means on the ``k`` leading eigenvectors of
    ``D^-1/2 A D^-1/2``, scaled by ``D^-1/2``. Overwrites ``affinity``.

    ARPACK on the largest eigenvalues needs only products with the dense matrix: 0.3 s at 6,040
    clients, where sklearn's ARPACK path (shift-invert, an LU factorisation of the dense
    Laplacian) took 5 s and its LOBPCG path 3.3 s, with the same groups. Self-affinities are
    left out of the degrees, as in sklearn (scipy's graph Laplacian): kept, they shift each
    client's eigenvalue by 1 / degree and the groups change (ARI 0.75 on one recorded round)."""
    np.fill_diagonal(affinity, 0.0)
    scale = 1.0 / np.sqrt(affinity.sum(axis=1))
    affinity *= scale[:, None]
    affinity *= scale[None, :]
    start = np.full(len(affinity), 1.0 / np.sqrt(len(affinity)))  # deterministic
    _, vectors = scipy.sparse.linalg.eigsh(affinity, k=k, which="LA", v0=start, tol=1e-6)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors * scale[:, None])


def nystrom_spectral_labels(x: np.ndarray, k: int, seed: int, landmarks: int = LANDMARKS
                            ) -> np.ndarray:
    """``spectral_labels(rbf_affinity(x))`` for any number of clients, from their affinities to
    ``landmarks`` seeded clients alone (Fowlkes et al. 2004, one-shot Nystrom): memory and time
    grow as n x landmarks instead of n^2.

    The affinity is approximated as ``C W^+ C^T`` (``C``: every client against the landmarks,
    ``W``: landmarks against each other) with the same RBF width rule; degrees, normalisation and
    the ``k`` leading eigenvectors come from ``m x m`` problems. Distances are taken on the whole
    descriptors: a random projection to 256 dimensions first made the groups disagree with the
    dense path's (ARI 0.55-0.78 on realistic uploads), the whole ones agree (0.99;
    tests/test_gfmfr.py, docs/performance.md).
    """
    n = len(x)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n, size=min(landmarks, n), replace=False))
    d2 = squared_distances(x, chosen)
    d2[chosen, np.arange(len(chosen))] = 0
    median_sq = _median_nonzero(d2, rows=2000)  # 500 columns: 2,000 rows are 1 M distances
    c = np.exp(d2.astype(np.float64) / (-2.0 * median_sq))
    values, vectors = np.linalg.eigh(c[chosen])
    kept = values > values.max() * 1e-8  # W is near-singular: a pseudo-inverse
    values, vectors = values[kept], vectors[:, kept]
    w_pinv = (vectors / values) @ vectors.T
    degree = np.maximum(c @ (w_pinv @ c.sum(axis=0)), 1e-12)
    q = (c / np.sqrt(degree)[:, None]) @ ((vectors / np.sqrt(values)) @ vectors.T)
    eigenvalues, rotation = np.linalg.eigh(q.T @ q)  # q q^T is the normalised affinity
    top = np.argsort(eigenvalues)[::-1][:k]
    embedding = q @ rotation[:, top] / np.sqrt(np.maximum(eigenvalues[top], 1e-12))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(
        embedding / np.sqrt(degree)[:, None])


def rbf_affinity(x: np.ndarray) -> np.ndarray:
    """exp(-gamma * d^2) with gamma = 1 / (2 * median nonzero pairwise distance^2).

    Squared distances from the Gram matrix (one float32 BLAS product: 6,040 x 8,321 descriptors
    in about a second, where scipy's pdist took 15 s single-threaded)."""
    d2 = squared_distances(x)
    np.fill_diagonal(d2, 0)
    median_sq = _median_nonzero(d2, rows=1000)  # 0.4 s less at 6,040 clients than all rows
    d2 /= -2.0 * median_sq
    return np.exp(d2, out=d2)


def squared_distances(x: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """Squared distances of every row of ``x`` to the rows ``columns`` (all by default), from one
    float32 Gram product, clipped at 0 (rounding)."""
    x = np.asarray(x, dtype=np.float32)
    squares = np.einsum("ij,ij->i", x, x)
    d2 = x @ (x if columns is None else x[columns]).T
    d2 *= -2
    d2 += squares[:, None]
    d2 += (squares if columns is None else squares[columns])[None, :]
    return np.maximum(d2, 0, out=d2)


def _median_nonzero(d2: np.ndarray, rows: int) -> float:
    """The RBF width rule's median squared distance (~ (median distance)^2), self-pairs excluded,
    over every k-th client's row: about ``rows`` of them (exact up to 2 x ``rows`` clients)."""
    d2 = d2[::max(1, len(d2) // rows)]
    nonzero = d2[d2 > 0]
    return float(np.median(nonzero)) if nonzero.size else 1.0


def align(previous: dict[int, int], users: list[int], labels: np.ndarray, k: int) -> np.ndarray:
    """Relabel ``labels`` so each new group takes the id of the old group it overlaps most.

    Hungarian matching on the (new x old) member-overlap matrix; with no previous round the
    labels are returned unchanged.
    """
    if not previous:
        return labels
    overlap = np.zeros((k, k))
    for user, label in zip(users, labels, strict=True):
        if user in previous:
            overlap[label, previous[user]] += 1
    new_ids, old_ids = linear_sum_assignment(overlap, maximize=True)
    mapping = dict(zip(new_ids.tolist(), old_ids.tolist(), strict=True))
    return np.asarray([mapping[label] for label in labels.tolist()])


def random_groups(users: list[int], k: int, seed: int) -> dict[int, int]:
    """Random but fixed groups (an ablation): user -> group from a seeded hash of the user id."""
    return {u: int(np.random.default_rng([seed, u]).integers(k)) for u in users}
