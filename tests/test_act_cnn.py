"""ACT's 7-layer CNN (model/act_cnn.py, docs/fidelity.md#act-110-backbones): shapes, parameter count, initialisation, 32 px only."""
import math

import pytest
import torch

from model import create_model
from model.act_cnn import ActCNN
from utils.core.errors import ConfigError


def test_shapes_and_state_dict_keys():
    torch.manual_seed(0)
    model = create_model("act_cnn", num_classes=100, img_size=32)
    features, logits = model(torch.randn(4, 3, 32, 32))
    assert features.shape == (4, 256) and logits.shape == (4, 100)
    assert {k.split(".")[0] for k in model.state_dict()} == {"backbone", "head"}
    with pytest.raises(ValueError, match="32x32"):
        model.backbone(torch.randn(2, 3, 64, 64))


def test_parameter_count():
    """515,580 backbone + 132,608 + 513 C head: 699,488 for CIFAR-100, 689,228 for CIFAR-80."""
    for classes, total in ((100, 699_488), (80, 689_228), (10, 653_318)):
        model = create_model("act_cnn", num_classes=classes, img_size=32)
        assert sum(p.numel() for p in model.backbone.parameters()) == 515_580
        assert sum(p.numel() for p in model.parameters()) == total
    convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == \
        [(3, 64, (3, 3), (1, 1)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1)), (128, 128, (3, 3), (1, 1)),
         (128, 196, (3, 3), (1, 1)), (196, 16, (3, 3), (1, 1))]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.backbone.modules()) == 3
    assert all(m.momentum == 0.1 for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_head_initialisation_statistics():
    """kaiming_normal_ (fan-in, gain sqrt 2) and zero biases in the MLP head; convs keep PyTorch's default."""
    torch.manual_seed(0)
    head = ActCNN.make_head(100)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    for layer, fan_in in ((head[0], 256), (head[3], 512)):
        w = layer.weight.detach().flatten()
        std = math.sqrt(2.0 / fan_in)  # PyTorch's default Linear init has std 1/sqrt(3 fan_in): 0.036 at 256
        assert abs(w.std().item() - std) < 0.02 * std
        assert abs(w.mean().item()) < 0.02 * std
        kurtosis = (((w - w.mean()) / w.std()) ** 4).mean().item()
        assert abs(kurtosis - 3.0) < 0.15  # normal, not uniform (1.8)
        assert torch.count_nonzero(layer.bias) == 0
    assert torch.equal(head[1].weight, torch.ones(512)) and torch.count_nonzero(head[1].bias) == 0
    first_conv = ActCNN().features[0]
    assert first_conv.weight.abs().max() <= 1 / math.sqrt(27)  # default kaiming_uniform(a=sqrt 5) bound


def test_resolution_and_pretrained_refused():
    with pytest.raises(ConfigError, match="set resolution: 32"):
        create_model("act_cnn", num_classes=10, img_size=224)
    with pytest.raises(ConfigError, match="pretrained: false"):
        create_model("act_cnn", num_classes=10, img_size=32, pretrained=True)


def test_stage1_cli_resolution_error_is_one_line(tmp_path, capsys):
    import stage_1
    from utils.core.entry import run_main

    with pytest.raises(SystemExit) as exit_info:
        run_main(stage_1.main, ["--backbone", "act_cnn", "--set", "resolution=16", "--output_dir", str(tmp_path),
                                "--device", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "act_cnn" in err[0] and "resolution: 32" in err[0]
