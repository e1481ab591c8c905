"""uint8 batches normalised on the device give the numbers of the old CPU ToTensor + Normalize."""
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from dataloader import build_data
from dataloader import transforms as tfm
from dataloader.device_normalise import DeviceNormaliser, normalise
from fixtures_data import make_cfg
from model import create_model
from utils.core.distributed import Runtime
from utils.training.engine import Precision, evaluate, make_loaders, train_one_epoch

MEAN, STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)


def _old(transform, mean=MEAN, std=STD):
    """The same transform ending as before this change: ToTensor + Normalize on the CPU."""
    assert isinstance(transform.transforms[-1], T.PILToTensor)
    return T.Compose(transform.transforms[:-1] + [T.ToTensor(), T.Normalize(mean, std)])


def _image(side=20, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


def _seeded(fn, img, seed):
    torch.manual_seed(seed)
    random.seed(seed)
    return fn(img)


def test_normalise_equals_totensor_normalize():
    img = _image()
    new = DeviceNormaliser(MEAN, STD)(T.PILToTensor()(img)[None])[0]
    old = T.Normalize(MEAN, STD)(T.ToTensor()(img))
    assert new.dtype == torch.float32
    torch.testing.assert_close(new, old, rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        normalise(old, mean=torch.zeros(3, 1, 1), std=torch.ones(3, 1, 1))


@pytest.mark.parametrize("family", ["small", "large"])
def test_every_view_matches_the_old_pipeline(family):
    """Stage 1, test, and the stage-2 (weak, strong) pair with its resize computed once for both views:
    the same numbers as each view ending in ToTensor + Normalize and resizing on its own."""
    common = dict(family=family, resolution=24, mean=MEAN, std=STD)
    norm = DeviceNormaliser(MEAN, STD)
    stage1 = tfm.stage1_transform(native_size=20, **common)
    views = tfm.stage2_transform(**common)
    old_views = tfm.TwoViews(*(_old(T.Compose([views.shared] + v.transforms)) for v in (views.weak, views.strong)))
    for seed in range(3):
        img = _image(seed=seed)
        for transform in (stage1, tfm.test_transform(**common)):
            new = _seeded(transform, img, seed)
            assert new.dtype == torch.uint8 and new.shape == (3, 24, 24)
            torch.testing.assert_close(norm(new[None])[0], _seeded(_old(transform), img, seed), rtol=0, atol=1e-6)
        new_pair, old_pair = _seeded(views, img, seed), _seeded(old_views, img, seed)
        assert all(v.dtype == torch.uint8 and v.shape == (3, 24, 24) for v in new_pair)
        weak, strong = norm(tuple(v[None] for v in new_pair))  # the tuple of views, view by view
        torch.testing.assert_close(weak[0], old_pair[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(strong[0], old_pair[1], rtol=0, atol=1e-6)


def test_digits_batches_are_uint8_and_evaluation_is_unchanged(tmp_path):
    cfg = make_cfg(dataset="digits", output_dir=str(tmp_path), num_workers=0, test_batch_size=128)
    data = build_data(cfg, stage="stage1", log=lambda m: None)
    runtime = Runtime(device=torch.device("cpu"), rank=0, world_size=1)
    train_loader, tests = make_loaders(data.train, data.test_sets, cfg, runtime)
    images, _, _ = next(iter(train_loader))
    assert images.dtype == torch.uint8
    assert data.test.pretransformed.dtype == torch.uint8  # the held test set is uint8 too
    torch.manual_seed(0)
    model = create_model("test_resnet", num_classes=data.num_classes, pretrained=False, img_size=32).eval()
    precision = Precision.create("fp32", runtime.device)
    acc = evaluate(model, tests["test"], precision=precision, runtime=runtime, normalise=data.normalise)
    # the old evaluation: the float images ToTensor + Normalize made
    old_tf = _old(data.test.transform, data.mean, data.std)
    old = torch.stack([old_tf(data.test.images.load(i)) for i in range(len(data.test))])
    with torch.no_grad():
        new_logits = torch.cat([model(data.normalise(x))[1] for x, _, _ in tests["test"]])
        old_logits = model(old)[1]
    torch.testing.assert_close(new_logits, old_logits, rtol=1e-5, atol=1e-5)
    expected = 100.0 * float((old_logits.argmax(1) == torch.as_tensor(data.test.labels)).float().mean())
    assert acc == pytest.approx(expected)
    # training steps see normalised float images
    seen = []

    def step(m, batch):
        seen.append((batch[0].dtype, float(batch[0].min())))
        return m(batch[0])[1].logsumexp(1).mean()

    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    train_one_epoch(model=model, loader=[next(iter(train_loader))], optimizer=opt, step=step, precision=precision,
                    runtime=runtime, epoch=0, normalise=data.normalise)
    assert seen[0][0] == torch.float32 and seen[0][1] < 0  # (0 - mean) / std is negative
