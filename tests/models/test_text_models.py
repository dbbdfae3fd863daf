"""CRNN feature layers, the restoration generator's scales and the PatchGAN critic."""

import pytest
import torch

from signbridge.models import CRNN, PatchDiscriminator, RestorationGenerator


def tiny_crnn(**kwargs) -> CRNN:
    return CRNN(num_classes=6, channels=(4, 8, 8, 8), hidden_size=8, **kwargs)


def test_crnn_logits_and_named_features():
    model = tiny_crnn().eval()
    x = torch.rand(2, 1, 32, 128)
    logits = model(x)
    assert logits.shape == (2, model.timesteps(128), 6) == (2, 32, 6)
    shapes = {"block1": (2, 4, 16, 64), "block2": (2, 8, 8, 32), "block3": (2, 8, 4, 32), "block4": (2, 8, 2, 32),
              "rnn": (2, 32, 16)}
    for layer, shape in shapes.items():
        with_features, features = model.forward_with_features(x, layer)
        assert features.shape == shape, layer
        torch.testing.assert_close(with_features, logits)  # the split forward is the same network
    assert model.forward_with_features(x)[1].shape == shapes["block4"]  # default: after the last conv block
    with pytest.raises(ValueError, match="unknown CRNN feature layer 'conv9'"):
        model.forward_features(x, "conv9")
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny_crnn(height=40)


def test_the_shortcut_head_reads_the_last_conv_block_and_leaves_inference_alone():
    torch.manual_seed(0)
    plain, with_head = tiny_crnn().eval(), tiny_crnn(shortcut_head=True).eval()
    assert plain.shortcut is None and with_head.shortcut is not None
    x = torch.rand(2, 1, 32, 128)
    logits, shortcut = with_head.forward_with_shortcut(x)
    assert logits.shape == shortcut.shape == (2, 32, 6)
    torch.testing.assert_close(logits, with_head(x))  # the head adds a second output, not a change to the first
    shortcut.sum().backward()  # its gradient reaches the conv blocks but not the LSTM
    assert with_head.blocks["block1"][0].weight.grad is not None and with_head.rnn.weight_hh_l0.grad is None
    with pytest.raises(ValueError, match="no shortcut head"):
        plain.forward_with_shortcut(x)


def test_a_recognizer_built_from_old_hyperparameters_has_no_shortcut_head():
    from signbridge.tasks.recognizer import build_crnn

    old = {"charset": "abc", "channels": [4, 8, 8, 8], "hidden_size": 8}  # saved before shortcut_weight existed
    assert build_crnn(old).shortcut is None
    assert build_crnn({**old, "shortcut_weight": 0.1}).shortcut is not None
    assert build_crnn({**old, "shortcut_weight": 0.0}).shortcut is None


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_generator_scales_and_starts_as_upscaling(scale):
    generator = RestorationGenerator(in_channels=1, channels=8, num_blocks=2, scale=scale)
    x = torch.rand(2, 1, 32 // scale, 128 // scale)
    out = generator(x)
    assert out.shape == (2, 1, 32, 128)
    if scale == 1:
        torch.testing.assert_close(out, x)  # the last layer starts at zero: the identity before training
    out.mean().backward()
    assert generator.tail.weight.grad.abs().sum() > 0


def test_patch_discriminator_gives_a_logit_per_patch():
    critic = PatchDiscriminator(in_channels=1, channels=8, num_layers=3)
    assert critic(torch.rand(2, 1, 32, 128)).shape == (2, 1, 4, 16)
