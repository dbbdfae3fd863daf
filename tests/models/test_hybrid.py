import pytest
import torch

from signbridge.models import HybridSignNet, HybridSignNetConfig, ImageNet, LandmarkNet, LandmarkNetConfig


def _net(num_classes: int, **options) -> HybridSignNet:
    """A hybrid with the tiny test backbone."""
    return HybridSignNet(num_classes, HybridSignNetConfig(backbone="test_efficientnet", **options))


def _inputs(batch=4, size=32):
    torch.manual_seed(0)
    present = torch.tensor([[True, True], [True, False], [False, True], [False, False]])[:batch]
    landmarks = torch.randn(batch, 2, 21, 3) * 0.1 * present[..., None, None]
    return torch.rand(batch, 3, size, size) * 255, landmarks, present


@pytest.mark.parametrize("options", [
    {}, {"fusion": "cross_attention"}, {"fusion": "late"}, {"spatial_attention": False},
    {"landmarks": LandmarkNetConfig(use_geometry=True)}, {"landmarks": LandmarkNetConfig(encoder="attention")},
    {"landmarks": LandmarkNetConfig(encoder="attention"), "fusion": "cross_attention"},
    {"landmarks": LandmarkNetConfig(rotate_hands=True)}, {"modality_dropout": 0.5},
    {"inputs": "image"}, {"inputs": "landmarks"}, {"inputs": "landmarks", "landmarks": {"use_geometry": True}},
])
def test_every_ablation_gives_finite_logits_and_gradients(options):
    model = _net(5, **options)
    image, landmarks, present = _inputs()
    outputs = model.forward_branches(image, landmarks, present, aspect=torch.tensor([1.0, 0.75, 1.33, 1.0]))
    assert set(outputs) == {"logits", *model.outputs()}
    for logits in outputs.values():
        assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    sum(outputs[name].sum() for name in model.outputs()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    built = {name for name, modules in model.parameter_groups().items() if modules}
    assert ("image" in built) == (options.get("inputs", "both") != "landmarks")
    assert ("landmarks" in built) == (options.get("inputs", "both") != "image")


def test_parameter_groups_cover_every_parameter_once():
    model = _net(3, fusion="cross_attention", landmarks=LandmarkNetConfig(use_geometry=True))
    grouped = [p for modules in model.parameter_groups().values() for m in modules for p in m.parameters()]
    assert len(grouped) == len(list(model.parameters()))
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("fusion", ["concat", "cross_attention", "late"])
def test_missing_hands_never_give_nan_and_their_landmark_values_are_ignored(fusion):
    model = _net(4, fusion=fusion).eval()
    image, landmarks, _ = _inputs()
    nobody = torch.zeros(4, 2, dtype=torch.bool)
    for name in model.outputs():
        model.output = name
        logits = model(image, torch.zeros_like(landmarks), nobody)
        assert torch.isfinite(logits).all()
        assert torch.allclose(logits, model(image, torch.randn_like(landmarks), nobody), atol=1e-6)


def test_the_output_chooses_the_classifier_and_is_saved_with_the_weights():
    model = _net(4).eval()
    image, landmarks, present = _inputs()
    outputs = model.forward_branches(image, landmarks, present)
    assert model.output == "fused" and torch.equal(outputs["logits"], outputs["fused"])
    model.output = "landmarks"
    assert torch.equal(model(image, landmarks, present), outputs["landmarks"])
    mean = torch.stack([outputs[n].log_softmax(-1) for n in ("fused", "image", "landmarks")]).mean(0)
    model.output = "mean"
    assert torch.allclose(model(image, landmarks, present), mean, atol=1e-6)
    model.output = "image"
    copy = _net(4)
    copy.load_state_dict(model.state_dict())
    assert copy.output == "image"
    with pytest.raises(ValueError, match="output must be one of"):
        model.output = "nonsense"
    with pytest.raises(ValueError, match="output must be one of"):
        _net(4, fusion="late").output = "fused"


def test_samples_without_a_hand_are_predicted_by_their_own_classifier():
    model = _net(4).eval()
    image, landmarks, present = _inputs()  # samples 0-2 have a hand, sample 3 has none
    outputs = model.forward_branches(image, landmarks, present)
    model.output = "landmarks"
    assert model.no_hand_output == "landmarks"  # setting output sets both
    model.no_hand_output = "image"
    logits = model(image, landmarks, present)
    assert torch.equal(logits[:3], outputs["landmarks"][:3]) and torch.equal(logits[3], outputs["image"][3])
    copy = _net(4)
    copy.load_state_dict(model.state_dict())
    assert (copy.output, copy.no_hand_output) == ("landmarks", "image")
    # a checkpoint from before the choice per hand presence: its one classifier predicts every sample
    old = {name: value for name, value in model.state_dict().items() if name != "no_hand_output_index"}
    copy.load_state_dict(old)
    assert (copy.output, copy.no_hand_output) == ("landmarks", "landmarks")


def test_switching_off_a_branch_leaves_the_other_classifiers_working():
    model = _net(4).eval()
    image, landmarks, present = _inputs()
    model.set_stage(inputs="image")
    outputs = model.forward_branches(image, landmarks, present)
    assert "landmarks" not in outputs and {"image", "fused", "logits"} <= set(outputs)
    model.set_stage(inputs="landmarks")
    outputs = model.forward_branches(image, landmarks, present)
    assert "image" not in outputs and {"landmarks", "fused", "logits"} <= set(outputs)


def test_the_landmark_branch_is_a_landmark_net():
    hybrid = _net(4).eval()
    alone = LandmarkNet(4).eval()
    alone.load_state_dict(hybrid.landmarks.state_dict())
    _, landmarks, present = _inputs()
    hybrid.set_stage(inputs="landmarks")  # no image needed
    assert torch.equal(alone(landmarks, present), hybrid.forward_branches(None, landmarks, present)["landmarks"])


def test_backbone_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    source = timm.create_model("test_efficientnet", num_classes=10)
    path = tmp_path / "backbone.safetensors"
    save_file(source.state_dict(), str(path))
    model = _net(4, weights_path=str(path))
    loaded = model.image.backbone.state_dict()
    assert loaded.keys() <= source.state_dict().keys()  # the classifier is dropped
    assert all(torch.equal(loaded[k], source.state_dict()[k]) for k in loaded)
    fresh = _net(4)
    assert not torch.equal(fresh.image.backbone.conv_stem.weight, model.image.backbone.conv_stem.weight)
    # pretrained=True with a weights file reads the file too (timm's download is only used without one)
    again = _net(4, pretrained=True, weights_path=str(path))
    assert torch.equal(again.image.backbone.conv_stem.weight, source.conv_stem.weight)


def test_the_image_branch_normalises_uint8_images_as_its_backbone_expects():
    import timm

    net = ImageNet(3, backbone="test_efficientnet").eval()
    config = timm.data.resolve_data_config({}, model=net.backbone)
    image = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    expected = (image.float() / 255 - torch.tensor(config["mean"]).view(1, 3, 1, 1)) / torch.tensor(
        config["std"]).view(1, 3, 1, 1)
    assert torch.allclose(net.normalize(image), expected, atol=1e-5)
    assert torch.equal(net(image), net(image.float()))  # uint8 or float 0..255: the same
    assert "mean" not in net.state_dict()  # derived from the backbone, not a weight


def test_unknown_backbone_is_a_clear_error():
    from signbridge.errors import InputError

    with pytest.raises(InputError, match="unknown timm backbone 'no_such_net'"):
        ImageNet(3, backbone="no_such_net")
