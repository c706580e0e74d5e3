"""Every registered model: output shape, finite outputs, parameter count as documented."""

from __future__ import annotations

import pytest
import torch

from digits.models import REGISTRY, count_parameters, create_model

SEED_MODELS = ["ann", "fnn", "mlp", "cnn", "cnn-small", "cnn-dropout", "cnn-kaggle"]


def test_every_seed_model_is_registered_by_name() -> None:
    assert set(SEED_MODELS) <= set(REGISTRY)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_model_outputs_ten_finite_logits(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_parameter_count_matches_the_documented_one(name: str) -> None:
    assert count_parameters(create_model(name)) == REGISTRY[name].parameters


def test_seed_parameter_counts_match_keras() -> None:
    # The figures Keras' model.summary() prints for the seeds' code.
    keras = {"ann": 101_770, "cnn": 93_322, "cnn-kaggle": 887_530, "cnn-small": 693_962}
    for name, expected in keras.items():
        assert count_parameters(create_model(name)) == expected


def test_pool_before_relu_is_the_same_function() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 8, 26, 26)
    relu_pool = torch.nn.functional.max_pool2d(torch.relu(x), 2)
    pool_relu = torch.relu(torch.nn.functional.max_pool2d(x, 2))
    torch.testing.assert_close(relu_pool, pool_relu, rtol=0, atol=0)


def test_unknown_model_and_argument() -> None:
    with pytest.raises(KeyError, match="unknown model 'resnet'"):
        create_model("resnet")
    with pytest.raises(TypeError, match="model 'ann'"):
        create_model("ann", depth=3)


def test_bn_cnn_without_batchnorm_keeps_the_convs_and_their_biases() -> None:
    # The BatchNorm ablation: same convolutions, each with a bias instead of a BatchNorm.
    plain = create_model("bn-cnn", batchnorm=False)
    normed = create_model("bn-cnn")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    convs = [m for m in plain.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7 and all(conv.bias is not None for conv in convs)
    batchnorm_parameters = sum(
        2 * m.num_features for m in normed.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    conv_biases = sum(conv.out_channels for conv in convs)
    assert count_parameters(plain) == count_parameters(normed) - batchnorm_parameters + conv_biases


def test_fast_cnn_of_sprint_sees_the_central_24_pixels_with_16_first_filters() -> None:
    model = create_model("fast-cnn", first=16, crop=2).eval()
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.out_channels == 16
    images = torch.rand(4, 1, 28, 28)
    bordered = images.clone()
    bordered[:, :, :2] = bordered[:, :, -2:] = 1.0  # ink in the margin alone
    bordered[:, :, :, :2] = bordered[:, :, :, -2:] = 1.0
    with torch.no_grad():
        assert model(images).shape == (4, 10)
        assert torch.equal(model(images), model(bordered))
    assert count_parameters(model) == 86_330
