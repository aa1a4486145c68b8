"""How long GFMFR's grouping takes, and whether it finds the groups the earlier algorithm found.

    python -m benchmarks.grouping --synthetic 6040 8321
    python -m benchmarks.grouping --synthetic 6040 12000 24000 8321 --skip-before
    python -m benchmarks.grouping --record ml-1m-mm --rounds 2 --out /tmp/descriptors
    python -m benchmarks.grouping --descriptors /tmp/descriptors/*.npy

Past ``strategies.grouping.DENSE_LIMIT`` clients ``cluster`` takes the landmark (Nystrom) path;
up to ``DENSE_CHECK`` clients the dense path is then run too and both are compared, and synthetic
descriptors are also compared with their planted groups (``--json`` keeps the rows).

``--record`` runs GFMFR on FedRAP in one process and saves every round's client descriptors (the
uploaded ``W1, b1, w, b``, one row per client) as ``.npy``. Each descriptor file (or the
synthetic one: taste groups plus a rank-300 spread plus noise) is then grouped twice: by
``strategies.grouping.cluster`` (spectral clustering on the whole descriptors' distances: ARPACK
on the dense affinity, or Nystrom landmarks past ``DENSE_LIMIT``) and by the algorithm it
replaced (PCA to 95% of the variance through the Gram matrix's eigendecomposition, pdist
distances, ARPACK), printing both times and their adjusted Rand index.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import pdist, squareform
from sklearn.cluster import SpectralClustering
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

import strategies.grouping as grouping
from strategies.grouping import cluster, pca_scores

DENSE_CHECK = 20_000  # clients up to which a landmark grouping is also run densely to compare


def earlier_cluster(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The grouping before 2026-12-05: standardise, unit length, PCA to 95%, RBF, ARPACK."""
    x = StandardScaler().fit_transform(z)
    x = x[:, np.isfinite(x).all(axis=0)]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = pca_scores(x, 0.95)
    distances = pdist(x)
    median = float(np.median(distances[distances > 0]))
    affinity = np.exp(-squareform(distances) ** 2 / (2.0 * median**2))
    return SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed,
                              assign_labels="kmeans").fit_predict(affinity)


def compare(z: np.ndarray, k: int = 5, seed: int = 0, before: bool = True,
            truth: np.ndarray | None = None) -> dict:
    tic = time.perf_counter()
    now = cluster(z, k, "spectral", True, seed)
    row = {"clients": int(z.shape[0]), "dims": int(z.shape[1]),
           "seconds": round(time.perf_counter() - tic, 2),
           "path": "landmarks" if len(z) > grouping.DENSE_LIMIT else "dense",
           "sizes": sorted(np.bincount(now, minlength=k).tolist(), reverse=True)}
    if truth is not None:  # synthetic: the planted taste groups
        row["ari_vs_planted"] = round(float(adjusted_rand_score(truth, now)), 3)
    if grouping.DENSE_LIMIT < len(z) <= DENSE_CHECK:  # the dense path still fits: compare
        tic = time.perf_counter()
        dense = cluster(z, k, "spectral", True, seed, dense_limit=len(z))
        row.update(seconds_dense=round(time.perf_counter() - tic, 2),
                   ari_vs_dense=round(float(adjusted_rand_score(dense, now)), 3))
    if before:  # grows as n^3: minutes past 10,000 clients
        tic = time.perf_counter()
        labels = earlier_cluster(z, k, seed)
        row.update(seconds_before=round(time.perf_counter() - tic, 2),
                   ari_vs_before=round(float(adjusted_rand_score(labels, now)), 3),
                   sizes_before=sorted(np.bincount(labels, minlength=k).tolist(), reverse=True))
    return row


def synthetic(n: int, dims: int, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(descriptors, planted groups)``: taste centres plus a rank-300 spread plus noise, drawn
    in float32 and filled in place (100,000 x 8,321 is 3.3 GB)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dims), dtype=np.float32)
    basis = rng.standard_normal((300, dims), dtype=np.float32)
    truth = rng.integers(k, size=n)
    z = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, 10_000):
        rows = slice(start, min(n, start + 10_000))
        count = rows.stop - rows.start
        z[rows] = rng.standard_normal((count, 300), dtype=np.float32) @ basis / 10
        z[rows] += 0.6 * centres[truth[rows]]
        z[rows] += 0.5 * rng.standard_normal((count, dims), dtype=np.float32)
    return z, truth


def record(federation: str, rounds: int, out: Path) -> list[Path]:
    """Run GFMFR on FedRAP in this process; save each round's descriptors before grouping."""
    import strategies.groups as groups
    from server_app.inprocess import main

    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    original = groups.cluster

    def saving(z, *args, **kwargs):
        saved.append(out / f"{federation}-round{len(saved) + 1}.npy")
        np.save(saved[-1], z)
        return original(z, *args, **kwargs)

    groups.cluster = saving
    try:
        main(["-c", f"dataset='{federation}' strategy='gfmfr' backbone='fedrap' "
                    f"num-server-rounds={rounds} results-dir='{out}'"])
    finally:
        groups.cluster = original
    return saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--descriptors", nargs="*", type=Path, default=[])
    parser.add_argument("--synthetic", nargs="+", type=int, metavar="N",
                        help="CLIENTS... DIMS: synthetic descriptors, one case per client count")
    parser.add_argument("--skip-before", action="store_true",
                        help="time only the current grouping (the earlier one grows as n^3)")
    parser.add_argument("--record", metavar="FEDERATION")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/gfmfr-descriptors"))
    parser.add_argument("--groups", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here too")
    args = parser.parse_args(argv)
    files = list(args.descriptors)
    if args.record:
        files += record(args.record, args.rounds, args.out)
    cases = [(str(f), np.load(f)) for f in files]
    if args.synthetic:
        if len(args.synthetic) < 2:
            sys.exit("--synthetic needs CLIENTS... DIMS, e.g. --synthetic 6040 12000 8321")
        *sizes, dims = args.synthetic
    elif not cases:
        sys.exit("nothing to group: give --descriptors FILES, --synthetic CLIENTS DIMS or "
                 "--record FEDERATION")
    rows = []
    for name, z in cases:  # recorded ones first; synthetic ones made one at a time (memory)
        rows.append({"descriptors": name, **compare(z, args.groups, before=not args.skip_before)})
        print(json.dumps(rows[-1]), flush=True)
    for n in (sizes if args.synthetic else []):
        z, truth = synthetic(n, dims, k=args.groups)
        before = not args.skip_before and n <= grouping.DENSE_LIMIT
        rows.append({"descriptors": f"synthetic {n} x {dims}",
                     **compare(z, args.groups, before=before, truth=truth)})
        print(json.dumps(rows[-1]), flush=True)
        del z
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
