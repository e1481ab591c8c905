"""Small in-memory test sets are transformed once: the same items, without the per-epoch PIL work."""
import numpy as np
import torch

from dataloader import build_data
from dataloader.base import ArrayImages, FileImages, NoisyLabelDataset
from dataloader import transforms
from fixtures_data import make_cfg, write_image

TF = transforms.test_transform(family="small", resolution=16, mean=(0.5,) * 3, std=(0.25,) * 3)


def _array_set(n=5):
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return NoisyLabelDataset(ArrayImages(images), np.arange(n) % 3, TF)


def test_pretransformed_items_equal_the_transformed_images():
    on_the_fly = _array_set()
    expected = [on_the_fly[i] for i in range(len(on_the_fly))]
    held = _array_set()
    assert held.pretransform(max_bytes=5 * 3 * 16 * 16)  # exactly fits: uint8, one byte a value
    assert held.pretransformed.shape == (5, 3, 16, 16) and held.pretransformed.dtype == torch.uint8
    for i, (image, label, index) in enumerate(expected):
        got_image, got_label, got_index = held[i]
        assert torch.equal(got_image, image) and (got_label, got_index) == (label, index)


def test_a_set_over_the_budget_or_read_from_files_is_left_alone(tmp_path):
    too_big = _array_set()
    assert not too_big.pretransform(max_bytes=5 * 3 * 16 * 16 - 1)
    assert too_big.pretransformed is None
    paths = [write_image(str(tmp_path / f"{i}.png"), seed=i) for i in range(3)]
    from_files = NoisyLabelDataset(FileImages(paths), np.zeros(3, dtype=np.int64), TF)
    assert not from_files.pretransform(max_bytes=2 ** 30)
    assert from_files.pretransformed is None


def test_digits_test_set_is_held_as_tensors_and_the_training_set_is_not(tmp_path):
    data = build_data(make_cfg(dataset="digits", output_dir=str(tmp_path)), stage="stage1", log=lambda m: None)
    assert data.test.pretransformed is not None and data.test.pretransformed.shape == (540, 3, 32, 32)
    assert data.train.pretransformed is None  # random augmentation: transformed anew every epoch
    fresh = data.test.transform(data.test.images.load(7))
    assert torch.equal(data.test[7][0], fresh)
