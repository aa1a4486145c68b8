"""Issue 25's probes, each run cheaply, and the table of what each gives (docs/reliability.md).

    python -m benchmarks.reliability          # run every probe, rewrite docs/reliability.md
    python -m benchmarks.reliability --check  # exit 1 if docs/reliability.md is out of date

Each probe feeds one hostile-but-realistic input to the piece that handles it (run-config
validation, a data loader on small files in a temporary folder, the checkpoint and results-folder
checks, the feature and image caches, a tiny in-process run) and records what a user sees: the
one-line error, or the warning and what was done instead. A probe whose outcome is not the
expected one is marked UNEXPECTED, and ``tests/test_reliability.py`` fails on it and on a stale doc.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"
STOPS, CONTINUES = "stops", "continues"


@dataclass(frozen=True)
class Probe:
    given: str  # the input, as a user would describe it
    expect: str  # STOPS (an error the user reads) or CONTINUES (handled, with what was done)
    run: Callable[[Path], str]  # gets a fresh temporary folder; returns what was done or raises
    item: str  # where issue 25 lists it


@dataclass(frozen=True)
class Outcome:
    probe: Probe
    result: str  # STOPS or CONTINUES
    message: str  # the error's or the handling's one line, temporary paths as <tmp>

    @property
    def unexpected(self) -> bool:
        return self.result != self.probe.expect


# --- inputs ---------------------------------------------------------------------------------
def _ml100k(root: Path, u_data: str, plots: bytes | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "u.data").write_text(u_data)
    (root / "u.item").write_text("".join(f"{i}|Movie {i} (1990)|01-Jan-1990||url|"
                                         + "|".join(["0"] * 18) + "|1\n" for i in range(1, 5)),
                                 encoding="latin-1")
    if plots is not None:
        (root / "plots.csv").write_bytes(plots)
    return root


def _paper(root: Path, inter: str, image: np.ndarray | None = None, n_items: int = 24) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(root / "text_features.npy", rng.normal(size=(n_items, 8)).astype(np.float32))
    np.save(root / "image_features.npy",
            rng.normal(size=(n_items, 8)).astype(np.float32) if image is None else image)
    (root / "inter.csv").write_text("userId,itemId,rating,timestamp\n" + inter)
    return root


def _tiny_interactions(n_users: int = 8, n_items: int = 24) -> str:
    rng = np.random.default_rng(0)
    rows = [(u, int(i)) for u in range(n_users) for i in rng.choice(n_items, 6, replace=False)]
    return "".join(f"{u},{i},1,{t}\n" for t, (u, i) in enumerate(rows, start=1))


def _config(**overrides) -> str:
    from strategies.config import RunConfig

    RunConfig.from_run_config({k.replace("_", "-"): v for k, v in overrides.items()})
    return "accepted"


def _checkpoint(tmp: Path, **made_with) -> Path:
    """The checkpoint of a run made with ``made_with``, as ``resume`` finds it."""
    from strategies.checkpoint import save_checkpoint
    from strategies.config import RunConfig

    cfg = RunConfig.from_run_config({k.replace("_", "-"): v for k, v in made_with.items()})
    path = tmp / "results" / "r" / "checkpoint.npz"
    save_checkpoint(path, {"shared/E": np.zeros((3, 2), np.float32)},
                    {"round": 2, "identity": cfg.identity()})
    return path


def _resume(tmp: Path, made_with: dict, now: dict, simulated: bool = False) -> str:
    from strategies.config import RunConfig
    from strategies.fedrec import FedRecStrategy

    path = _checkpoint(tmp, **made_with)
    cfg = RunConfig.from_run_config({"resume": True, "run-name": "r", **made_with, **now})
    FedRecStrategy.check_resumable(path, cfg, simulated)
    return "resumes"


@contextlib.contextmanager
def _warnings(name: str) -> Iterator[list[str]]:
    """WARNING lines logged under logger ``name`` while the block runs."""
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)


def _run(tmp: Path, strategy: str, fault: Callable | None = None, **extra) -> str:
    """A tiny in-process run (8 users, 24 items, precomputed features) of the real apps."""
    from server_app.inprocess import run_inprocess

    _paper(tmp / "data" / "gfmfr", _tiny_interactions())
    config = {"dataset": "gfmfr", "data-dir": str(tmp / "data"), "cache-dir": str(tmp / "cache"),
              "results-dir": str(tmp / "results"), "max-in-flight": 0, "latent-dim": 8,
              "num-server-rounds": 3, "strategy": strategy, **extra}
    flwr = logging.getLogger("flwr")
    level, flwr.level = flwr.level, logging.CRITICAL  # the probe's outcome is the line to read
    try:
        run_inprocess(config, 8, **({"fault": fault} if fault else {}))
    finally:
        flwr.setLevel(level)
    return "the run completed"


# --- probes, in the order of issue 25 -----------------------------------------------------------
def p_overflowing_features(tmp: Path) -> str:
    from datasets.paper_layout import load_paper_layout

    image = np.ones((24, 8), dtype=np.float64)
    image[1, 2] = 1e300
    with np.errstate(over="ignore"):
        load_paper_layout(_paper(tmp / "g", _tiny_interactions(), image=image))
    return "loaded"


def p_nan_feature_cache(tmp: Path) -> str:
    from encoders.cache import FeatureCache

    cache = FeatureCache.open(tmp, "text", "minilm", "identity")
    cache.add(["a", "b"], np.full((2, 4), np.nan), np.ones(2, dtype=bool))
    cache.save()
    with _warnings("encoders.cache") as seen:
        again = FeatureCache.open(tmp, "text", "minilm", "identity")
    return f"{seen[0]} (cached rows used: {len(again.rows)})"


def p_all_clients_fail(tmp: Path) -> str:
    from strategies import protocol as p

    def fault(node, received, reply):
        if received.metadata.message_type == "train" and \
                int(received.content[p.CONFIG][p.SERVER_ROUND]) >= 2:
            raise FloatingPointError("local training diverged in round 2")

    return _run(tmp, "fcf", fault, **{"max-failed-rounds": 0})


def p_nan_teacher(tmp: Path) -> str:
    from strategies.fusion import FusionTrainer

    tables = FusionTrainer.tables
    FusionTrainer.tables = lambda self, groups: tables(self, groups) * np.nan
    try:
        return _run(tmp, "gfmfr", **{"num-groups": 2, "fusion-epochs": 2})
    finally:
        FusionTrainer.tables = tables


def p_unfinished_run_name(tmp: Path) -> str:
    from server_app.app import check_run_dir

    check_run_dir(_checkpoint(tmp).parent, resume=False)
    return "the run starts"


def p_finished_run_name(tmp: Path) -> str:
    from server_app.app import check_run_dir

    run_dir = tmp / "results" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text("{}")
    check_run_dir(run_dir, resume=False)
    return "the run starts"


def p_data_dir_wins(tmp: Path) -> str:
    from strategies.config import RunConfig

    before = os.environ.get("GFMFR_DATA_DIR")
    os.environ["GFMFR_DATA_DIR"] = str(tmp / "from-env")
    try:
        explicit = RunConfig.from_run_config({"data-dir": str(tmp / "explicit")}).data_path()
        default = RunConfig.from_run_config({}).data_path()
    finally:
        if before is None:
            del os.environ["GFMFR_DATA_DIR"]
        else:
            os.environ["GFMFR_DATA_DIR"] = before
    return f"data-dir={explicit} is used; without data-dir, the environment's {default}"


def p_plots(content: bytes) -> Callable[[Path], str]:
    def probe(tmp: Path) -> str:
        from datasets.movielens import load_ml100k

        data = load_ml100k(_ml100k(tmp / "ml", "1\t1\t5\t10\n1\t2\t5\t11\n1\t3\t5\t12\n",
                                   content))
        return f"loaded; item 1's text: {data.catalog.texts[0]!r}"
    return probe


def p_timestamp(stamp: str) -> Callable[[Path], str]:
    def probe(tmp: Path) -> str:
        from datasets.paper_layout import load_paper_layout

        load_paper_layout(_paper(tmp / "g", f"0,0,5,1\n0,1,4,{stamp}\n0,2,3,3\n", n_items=3))
        return "loaded"
    return probe


def p_truncated_checkpoint(tmp: Path) -> str:
    from strategies.checkpoint import load_checkpoint

    path = _checkpoint(tmp)
    path.write_bytes(path.read_bytes()[:100])
    load_checkpoint(path)
    return "loaded"


def p_unwritable_results(tmp: Path) -> str:
    from server_app.app import check_run_dir

    (tmp / "results").write_text("a file where the results folder should be")
    check_run_dir(tmp / "results" / "r", resume=False)
    return "the run starts"


def p_failed_checkpoint_write(tmp: Path) -> str:
    from strategies.checkpoint import save_checkpoint

    path = tmp / "r" / "checkpoint.npz"
    path.mkdir(parents=True)  # a folder in the way: the final rename fails
    try:
        save_checkpoint(path, {"E": np.zeros(2, np.float32)}, {})
    except OSError as error:
        left = sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp"))
        raise OSError(f"{error}; temporary files left: {', '.join(left) or 'none'}") from None
    return "written"


def p_corrupt_synthetic_image(tmp: Path) -> str:
    from datasets.synthetic import SyntheticSpec, generate_synthetic

    spec = SyntheticSpec(n_users=10, n_items=20, interactions=5)
    path = generate_synthetic(spec, tmp).catalog.image_paths[0]
    path.write_bytes(path.read_bytes()[:50])
    with _warnings("datasets.synthetic") as seen:
        generate_synthetic(spec, tmp)
    return seen[0]


def p_duplicates(tmp: Path) -> str:
    from datasets.movielens import load_ml100k

    data = load_ml100k(_ml100k(tmp / "ml", "1\t1\t5\t10\n1\t2\t5\t11\n1\t3\t5\t12\n"
                                           "1\t3\t4\t13\n"))
    return data.describe().split(", ", 3)[3]


def p_layout_image_count(tmp: Path) -> str:
    from datasets.paper_layout import load_paper_layout

    data = load_paper_layout(_paper(tmp / "g", _tiny_interactions()))
    return (f"describe(): '{data.describe().split(', ')[-1]}'; `gfmfr data check` prints the "
            f"same count (catalog.n_missing_images = {data.catalog.n_missing_images}): "
            "precomputed image features count as images")


PROBES: tuple[Probe, ...] = (
    Probe("float64 feature file holding 1e300 (finite, inf once cast to float32)", STOPS,
           p_overflowing_features, "1.1"),
    Probe("feature cache whose bytes are valid but whose vectors are NaN", CONTINUES,
           p_nan_feature_cache, "1.1"),
    Probe("`fusion-lr=inf`", STOPS, lambda tmp: _config(fusion_lr=float("inf")), "1.1"),
    Probe("`lr=nan`", STOPS, lambda tmp: _config(lr=float("nan")), "1.1"),
    Probe("every client fails from round 2 (tiny in-process run, `max-failed-rounds=0`)",
           STOPS, p_all_clients_fail, "1.1"),
    Probe("the fusion network produces NaN (GFMFR, tiny in-process run)", STOPS,
           p_nan_teacher, "1.1"),
    Probe("`resume=true seed=7` on a seed-0 checkpoint", STOPS,
           lambda tmp: _resume(tmp, {}, {"seed": 7}), "1.2"),
    Probe("`resume=true strategy='fedrap'` on a GFMFR checkpoint", STOPS,
           lambda tmp: _resume(tmp, {"strategy": "gfmfr"}, {"strategy": "fedrap"}), "1.2"),
    Probe("`resume=true latent-dim=32` on a latent-dim-64 checkpoint", STOPS,
           lambda tmp: _resume(tmp, {}, {"latent-dim": 32}), "1.2"),
    Probe("`resume=true` without the `client-state-dir` the run kept private state in", STOPS,
           lambda tmp: _resume(tmp, {"client-state-dir": "/clients"}, {"client-state-dir": ""}),
           "1.2"),
    Probe("`resume=true` of a simulated run that kept private state in memory only", STOPS,
          lambda tmp: _resume(tmp, {}, {}, simulated=True), "1.2"),
    Probe("`resume=true` with the same config", CONTINUES,
           lambda tmp: _resume(tmp, {"seed": 3}, {}), "1.2"),
    Probe("a new run with the `run-name` of an unfinished run (no `resume=true`)", STOPS,
           p_unfinished_run_name, "1.3"),
    Probe("a new run with the `run-name` of a finished run", STOPS, p_finished_run_name, "1.3"),
    Probe("`GFMFR_DATA_DIR` set and an explicit `data-dir`", CONTINUES, p_data_dir_wins, "1.4"),
    Probe("non-UTF-8 bytes on line 3 of `plots.csv`", STOPS,
           p_plots(b"item_id,plot\n1,ok\n2,caf\xe9 society\n"), "1.5"),
    Probe("a byte order mark at the start of `plots.csv`", CONTINUES,
           p_plots("\ufeffitem_id,plot\n1,a heist\n".encode()), "1.5"),
    *(Probe(f"timestamp `{stamp}` in `inter.csv`", STOPS, p_timestamp(stamp), "1.5")
      for stamp in ("nan", "inf", "1e30")),
    Probe("a truncated `checkpoint.npz` on resume", STOPS, p_truncated_checkpoint, "1.5"),
    Probe("`seed=-1`", STOPS, lambda tmp: _config(seed=-1), "1.5"),
    Probe("a `results-dir` that cannot be written (a file in its place)", STOPS,
           p_unwritable_results, "1.6"),
    Probe("a checkpoint write that fails at the final rename", STOPS, p_failed_checkpoint_write,
           "1.6"),
    Probe("a truncated rendered synthetic image in the cache", CONTINUES,
           p_corrupt_synthetic_image, "1.7"),
    Probe("the same (user, item) rated twice in `u.data`", CONTINUES, p_duplicates, "1.7"),
    Probe("the gfmfr layout (precomputed image features)", CONTINUES, p_layout_image_count,
           "1.7"),
    Probe("`num-server-rounds=true`", STOPS, lambda tmp: _config(num_server_rounds=True), "1.7"),
    Probe("`seed=1.5`", STOPS, lambda tmp: _config(seed=1.5), "1.7"),
    Probe("`weight-decay=0.001` with Adam (the FCF collapse)", STOPS,
           lambda tmp: _config(weight_decay=0.001), "2"),
    Probe("`weight-decay=0.01` with SGD at `item-lr=16.82`", STOPS,
           lambda tmp: _config(optimizer="sgd", item_lr=16.82, weight_decay=0.01), "2"),
    Probe("the spec's SGD recipe (`item-lr=16.82 weight-decay=0.0001`)", CONTINUES,
           lambda tmp: _config(optimizer="sgd", item_lr=16.82, personal_lr=16.82,
                               weight_decay=0.0001), "2"),
)


def run_probe(probe: Probe) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="gfmfr-probe-") as folder:
        tmp = Path(folder)
        try:
            result, message = CONTINUES, probe.run(tmp)
        except Exception as error:  # noqa: BLE001 - what a user would see is the point
            result, message = STOPS, f"{type(error).__name__}: {error}"
        for path in {str(tmp.resolve()), str(tmp)}:
            message = message.replace(path, "<tmp>")
    return Outcome(probe, result, " ".join(message.split()))


def render(outcomes: list[Outcome]) -> str:
    lines = [
        "# Reliability: every probe of issue 25 and what it gives",
        "",
        "Generated by `python -m benchmarks.reliability` (`--check` compares without writing;",
        "`tests/test_reliability.py` fails when this file is stale or a probe's outcome changes).",
        "Each probe runs the piece that handles the input, on small files in a temporary folder",
        "(`<tmp>`): run-config validation, the data loaders, the checkpoint and results-folder",
        "checks, the feature and image caches, and for two of them a tiny in-process run of the",
        "real ServerApp and ClientApp. *stops*: the run ends before (or instead of) training, with",
        "the message shown; *continues*: the input is handled as the message says.",
        "",
        "| # | issue 25 | input | outcome | message |",
        "| ---: | --- | --- | --- | --- |",
    ]
    for number, outcome in enumerate(outcomes, start=1):
        result = outcome.result + (" **UNEXPECTED**" if outcome.unexpected else "")
        message = outcome.message.replace("|", "\\|")
        lines.append(f"| {number} | {outcome.probe.item} | {outcome.probe.given} | {result} | "
                     f"{message} |")
    lines += [
        "",
        "Not probed here, because they need full runs or several processes (tests instead):",
        "",
        "- kill and resume continues exactly:",
        "  `tests/test_faults.py::test_killed_server_resumes_to_the_same_result`;",
        "- a killed SuperNode restores its users' private state: `tests/test_deployment.py`;",
        "- issue 25, section 2 (tests that can fail), each checked once against a deliberately",
        "  broken variant: `tests/test_contract.py`, `tests/test_backbones.py`,",
        "  `tests/test_fuzz.py`, `tests/test_gfmfr.py`, `tests/test_config.py`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if docs/reliability.md differs from what the probes give")
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args(argv)
    outcomes = [run_probe(probe) for probe in PROBES]
    text = render(outcomes)
    bad = [o for o in outcomes if o.unexpected]
    for outcome in bad:
        print(f"UNEXPECTED: {outcome.probe.given}: {outcome.result}: {outcome.message}",
              file=sys.stderr)
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True),
                                                       text.splitlines(True), str(args.out),
                                                       "probes now"))
            return 1
        return 1 if bad else 0
    args.out.write_text(text)
    print(f"{args.out}: {len(outcomes)} probes, {len(bad)} unexpected")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
