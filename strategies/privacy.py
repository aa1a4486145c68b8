"""Update clipping, local differential privacy noise and its privacy budget (pure numpy).

Clipping bounds a client's update (the sensitivity LDP noise is scaled to); noise is added on the
device to every uploaded tensor, so the server only ever sees noisy parameters. The Laplace
mechanism needs an L1 bound, the Gaussian one an L2 bound: the clip uses the mechanism's norm.

Flower's ``LocalDpMod`` was not reused: it reads and writes the legacy FitIns/FitRes layout (this
app's records carry named tables and row ids), offers Gaussian noise only, draws it from numpy's
global generator (which a simulation seeds from the run's seed) and keeps no privacy account. Its
calibration, ``sigma = sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon``, is the classic bound;
here ``dp-accounting``'s RDP accountant calibrates and composes over the rounds, which is tighter.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

MECHANISMS = ("laplace", "gaussian")
CLIP_NORM = {"laplace": 1, "gaussian": 2}  # the norm each mechanism's sensitivity is measured in


@dataclass(frozen=True)
class LdpBudget:
    """The noise one client adds per round and the privacy it buys over the run.

    Local DP protects a user's whole dataset: two datasets of one user give updates that differ
    by at most ``2 * clip`` in the mechanism's norm once clipped, the sensitivity. A client that
    trains in every one of ``rounds`` rounds releases ``rounds`` noisy updates; ``epsilon`` is for
    all of them together (Laplace: basic composition, delta 0; Gaussian: RDP accountant).
    """

    mechanism: str
    clip: float  # bound of the update, L1 (laplace) or L2 (gaussian)
    scale: float  # Laplace b or Gaussian sigma, per entry of every uploaded tensor
    epsilon_round: float
    epsilon: float  # over the run
    delta: float
    rounds: int

    @property
    def sensitivity(self) -> float:
        return 2.0 * self.clip

    def as_dict(self) -> dict:
        return {**asdict(self), "clip_norm": f"L{CLIP_NORM[self.mechanism]}",
                "sensitivity": self.sensitivity,
                "accountant": "basic composition" if self.mechanism == "laplace"
                else "dp-accounting RDP"}


def _gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    from dp_accounting import GaussianDpEvent
    from dp_accounting.rdp import RdpAccountant

    accountant = RdpAccountant()
    accountant.compose(GaussianDpEvent(noise_multiplier), rounds)
    return float(accountant.get_epsilon(delta))


@functools.lru_cache(maxsize=16)  # every client of a run asks for the same plan each round
def plan_budget(mechanism: str, epsilon: float, delta: float, clip: float, rounds: int
                ) -> LdpBudget:
    """The noise scale that spends ``epsilon`` (and ``delta``, Gaussian) over ``rounds``."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown noise mechanism {mechanism!r}; choose {', '.join(MECHANISMS)}")
    if not (epsilon > 0 and clip > 0 and rounds >= 1):
        raise ValueError("a privacy budget needs ldp-epsilon > 0 and ldp-clip > 0")
    if mechanism == "laplace":
        per_round = epsilon / rounds
        return LdpBudget(mechanism, clip, 2.0 * clip / per_round, per_round, epsilon, 0.0, rounds)
    if not 0 < delta < 1:
        raise ValueError("the Gaussian mechanism needs 0 < ldp-delta < 1")
    low, high = 1e-3, 1e4  # noise multipliers; epsilon falls as the multiplier grows
    for _ in range(60):  # bisection on a log scale
        mid = float(np.sqrt(low * high))
        low, high = (mid, high) if _gaussian_epsilon(mid, rounds, delta) > epsilon else (low, mid)
    return LdpBudget(mechanism, clip, high * 2.0 * clip, _gaussian_epsilon(high, 1, delta),
                     _gaussian_epsilon(high, rounds, delta), delta, rounds)


def budget_of(mechanism: str, scale: float, clip: float, delta: float, rounds: int
              ) -> LdpBudget | None:
    """The budget a given noise ``scale`` spends (None: no clip, so no finite budget)."""
    if scale <= 0 or clip <= 0:
        return None
    if mechanism == "laplace":
        per_round = 2.0 * clip / scale
        return LdpBudget(mechanism, clip, scale, per_round, per_round * rounds, 0.0, rounds)
    multiplier = scale / (2.0 * clip)
    return LdpBudget(mechanism, clip, scale, _gaussian_epsilon(multiplier, 1, delta),
                     _gaussian_epsilon(multiplier, rounds, delta), delta, rounds)


def update_norm(upload: dict[str, np.ndarray], base: dict[str, np.ndarray], ord: int = 2
                ) -> float:
    """L2 (or L1, ``ord=1``) norm of the whole update (all tensors' differences from what was
    broadcast).

    Squares summed by a float32 dot product per tensor: the server screens every reply with
    this, and a float64 copy of each item table made it 7x slower for a threshold check."""
    total = 0.0
    for k in base:
        diff = np.subtract(upload[k], base[k], dtype=np.float32).ravel()
        total += float(np.abs(diff).sum()) if ord == 1 else float(diff @ diff)
    return total if ord == 1 else float(np.sqrt(total))


def clip_update(upload: dict[str, np.ndarray], base: dict[str, np.ndarray], max_norm: float,
                ord: int = 2) -> dict[str, np.ndarray]:
    """Scale the update down to norm ``max_norm`` (L2, or L1 with ``ord=1``; unchanged when
    already within it)."""
    norm = update_norm(upload, base, ord)
    if max_norm <= 0 or norm <= max_norm:
        return upload
    factor = max_norm / norm
    return {k: (base[k] + (upload[k] - base[k]) * factor).astype(upload[k].dtype) for k in upload}


def add_noise(arrays: dict[str, np.ndarray], mechanism: str, scale: float,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Add i.i.d. Laplace(0, scale) or Gaussian(0, scale^2) noise to every tensor."""
    if scale <= 0:
        return arrays
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown noise mechanism {mechanism!r}; choose {', '.join(MECHANISMS)}")
    draw = rng.laplace if mechanism == "laplace" else rng.normal
    return {k: (v + draw(0.0, scale, size=v.shape)).astype(v.dtype) for k, v in arrays.items()}
