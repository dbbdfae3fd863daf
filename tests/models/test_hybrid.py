import pytest
import torch

from signbridge.models import HybridSignNet


def _inputs(batch=4, size=32):
    torch.manual_seed(0)
    present = torch.tensor([[True, True], [True, False], [False, True], [False, False]])[:batch]
    landmarks = torch.randn(batch, 2, 21, 3) * 0.1 * present[..., None, None]
    return torch.randn(batch, 3, size, size), landmarks, present


@pytest.mark.parametrize("options", [
    {}, {"fusion": "concat"}, {"spatial_attention": False}, {"use_geometry": True},
    {"inputs": "image"}, {"inputs": "landmarks"}, {"inputs": "landmarks", "use_geometry": True},
])
def test_every_ablation_gives_finite_logits_and_gradients(options):
    model = HybridSignNet(5, backbone="test_efficientnet", **options)
    image, landmarks, present = _inputs()
    logits = model(image, landmarks, present)
    assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    built = {name for name, modules in model.parameter_groups().items() if modules}
    assert ("image" in built) == (options.get("inputs", "both") != "landmarks")
    assert ("landmarks" in built) == (options.get("inputs", "both") != "image")


def test_parameter_groups_cover_every_parameter_once():
    model = HybridSignNet(3, backbone="test_efficientnet", use_geometry=True)
    grouped = [p for modules in model.parameter_groups().values() for m in modules for p in m.parameters()]
    assert len(grouped) == len(list(model.parameters()))
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()}


def test_missing_hands_do_not_change_the_image_path_and_never_give_nan():
    model = HybridSignNet(4, backbone="test_efficientnet").eval()
    image, landmarks, _ = _inputs()
    nobody = torch.zeros(4, 2, dtype=torch.bool)
    logits = model(image, torch.zeros_like(landmarks), nobody)
    assert torch.isfinite(logits).all()
    # with no hands the landmarks' values are ignored entirely
    assert torch.allclose(logits, model(image, torch.randn_like(landmarks), nobody))


def test_switching_off_a_branch_zeroes_its_features():
    model = HybridSignNet(4, backbone="test_efficientnet").eval()
    image, landmarks, present = _inputs()
    model.active_inputs = "image"
    features = model.forward_features(image, landmarks, present)
    assert torch.count_nonzero(features[:, model.embed_dim:]) == 0
    assert torch.count_nonzero(features[:, :model.embed_dim]) > 0
    model.active_inputs = "landmarks"
    features = model.forward_features(image, landmarks, present)
    assert torch.count_nonzero(features[:, :model.embed_dim]) == 0


def test_geometry_can_be_given_or_computed():
    from signbridge.hands.features import hand_geometry

    model = HybridSignNet(4, backbone="test_efficientnet", use_geometry=True).eval()
    image, landmarks, present = _inputs()
    computed = model(image, landmarks, present)
    given = model(image, landmarks, present, geometry=hand_geometry(landmarks, present))
    assert torch.allclose(computed, given)


def test_backbone_weights_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(3)
    source = timm.create_model("test_efficientnet", num_classes=10)
    path = tmp_path / "backbone.safetensors"
    save_file(source.state_dict(), str(path))
    model = HybridSignNet(4, backbone="test_efficientnet", weights_path=str(path))
    loaded = model.backbone.state_dict()
    assert loaded.keys() <= source.state_dict().keys()  # the classifier is dropped
    assert all(torch.equal(loaded[k], source.state_dict()[k]) for k in loaded)
    fresh = HybridSignNet(4, backbone="test_efficientnet")
    assert not torch.equal(fresh.backbone.conv_stem.weight, model.backbone.conv_stem.weight)
