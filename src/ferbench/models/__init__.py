"""Backbones and heads. ``build_backbone(name, in_channels, image_size) -> (module, feature_dim)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ferbench.errors import FerbenchError
from ferbench.models import backbones
from ferbench.models.backbones import BACKBONES, Backbone
from ferbench.models.heads import LinearHead, mlp

__all__ = ["Backbone", "LinearHead", "backbone_names", "build_backbone", "imagenet_normalisation",
           "load_backbone_weights", "mlp"]


def backbone_names() -> list[str]:
    return sorted(BACKBONES)


def build_backbone(name: str, in_channels: int = 3, image_size: int = 64,
                   **options: Any) -> tuple[nn.Module, int]:
    """Build a randomly initialised backbone; ``options`` go to its builder (e.g. width)."""
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise FerbenchError(
            f"backbone: unknown name {name!r} (known: {', '.join(backbone_names())})") from None
    if in_channels not in (1, 3):
        raise FerbenchError(f"backbone: in_channels must be 1 or 3, got {in_channels}")
    if image_size < 16:
        raise FerbenchError(f"backbone: image_size {image_size} is too small (minimum 16)")
    module = builder(in_channels, image_size, **options)
    return module, module.feature_dim


#: backbones with ``backbone_weights: imagenet``: torchvision's weights enum (its IMAGENET1K_V1
#: entry), torchvision's layer names in our body's order (``body.<i>`` is layer i; the rest of
#: torchvision's keys, its classifier and GoogLeNet's aux heads, are dropped) and the stem conv
#: (random in the small-input stem, summed over RGB for grey input)
_IMAGENET = {
    "resnet18": ("ResNet18_Weights", backbones.RESNET_LAYERS, "conv1.weight"),
    "resnet50": ("ResNet50_Weights", backbones.RESNET_LAYERS, "conv1.weight"),
    "inception_v1": ("GoogLeNet_Weights", backbones.INCEPTION_V1_LAYERS, "conv1.conv.weight"),
}


def load_backbone_weights(backbone: nn.Module, spec: str | None, name: str, in_channels: int,
                          image_size: int) -> None:
    """Start ``backbone`` from ``spec``: ``none`` (or null: random), ``imagenet`` (torchvision's
    ImageNet weights of resnet18, resnet50 or inception_v1, from the local torch hub cache or a
    download where the machine can reach it), or a file: a backbone state dict, or a ferbench
    ``model.pt`` / ``encoder.pt`` (its ``backbone.*`` entries: a face-pretrained start from
    another run). Loads strictly; every
    failure is one FerbenchError naming the file and the keys at fault."""
    if spec in (None, "", "none"):
        return
    left_random: set[str] = set()
    if spec == "imagenet":
        state, left_random = _imagenet_state(name, in_channels, image_size)
        where = "backbone_weights: imagenet"
    else:
        path = Path(spec)
        where = str(path)
        state = _backbone_state_from_file(path)
    missing, unexpected = _strict_keys(backbone, state)
    missing = [k for k in missing if k not in left_random]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise FerbenchError(f"{where}: weights do not fit backbone {name!r} ({what}"
                            f"{' ...' if len(missing or unexpected) > 3 else ''})")
    try:
        backbone.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise FerbenchError(f"{where}: weights do not fit backbone {name!r} "
                            f"({str(err).splitlines()[-1].strip()})") from None


def _strict_keys(backbone: nn.Module, state: dict[str, Any]) -> tuple[list[str], list[str]]:
    own = set(backbone.state_dict())
    return sorted(own - set(state)), sorted(set(state) - own)


def _backbone_state_from_file(path: Path) -> dict[str, Any]:
    from ferbench.io import load_torch_file

    payload = load_torch_file(path, "backbone weights file")
    if isinstance(payload, dict) and isinstance(payload.get("state"), dict):
        payload = payload["state"]          # a ferbench encoder.pt
    if not isinstance(payload, dict) or not payload:
        raise FerbenchError(f"{path}: not a state dict")
    prefixed = {k[len("backbone."):]: v for k, v in payload.items() if k.startswith("backbone.")}
    return prefixed or dict(payload)        # model.pt / encoder.pt, or a bare backbone state


def imagenet_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel of the input backbone ``name``'s ImageNet weights expect at
    our body's first layer, from torchvision's own preset for those weights (no download)."""
    import torchvision

    if name not in _IMAGENET:
        raise FerbenchError(f"backbone_weights: imagenet exists for backbones {', '.join(sorted(_IMAGENET))} "
                            f"only, not {name!r}; give a weights file instead")
    if name == "inception_v1":
        # torchvision runs these weights with transform_input, which maps the preset's
        # normalisation back to (x - 0.5) / 0.5 before conv1; our trunk has no transform_input
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    preset = getattr(torchvision.models, _IMAGENET[name][0]).IMAGENET1K_V1.transforms()
    return tuple(map(float, preset.mean)), tuple(map(float, preset.std))


def _imagenet_state(name: str, in_channels: int, image_size: int) -> tuple[dict[str, Any], set[str]]:
    """torchvision's ImageNet weights for backbone ``name`` in our Backbone's key names, and the
    keys left random on purpose (the small-input stem's 3x3 conv: ImageNet's 7x7 one cannot fill
    it)."""
    import torch

    if name not in _IMAGENET:
        raise FerbenchError(f"backbone_weights: imagenet exists for backbones {', '.join(sorted(_IMAGENET))} "
                            f"only, not {name!r}; give a weights file instead")
    import torchvision

    enum, layers, stem = _IMAGENET[name]
    weights = getattr(torchvision.models, enum).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as err:
        raise FerbenchError(
            f"backbone_weights: imagenet: cannot download {weights.url} ({type(err).__name__}); place the "
            f"file at {cached} or set backbone_weights to the path of a local copy") from None
    position = {layer: str(i) for i, layer in enumerate(layers)}
    out = {}
    for key, value in state.items():
        layer, _, rest = key.partition(".")
        if layer in position:
            out[f"body.{position[layer]}.{rest}"] = value
    for key in [k for k in out if k.endswith(".running_var")]:
        # files saved before BatchNorm counted its batches lack the counter (torchvision's own
        # loader fills it in the same way); strict key matching would call it missing
        out.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.tensor(0))
    layer, _, rest = stem.partition(".")
    stem_key = f"body.{position[layer]}.{rest}"
    if image_size < backbones.SMALL_INPUT:
        del out[stem_key]                   # the 3x3 small-input stem stays random
        return out, {stem_key}
    if in_channels == 1:
        out[stem_key] = out[stem_key].sum(dim=1, keepdim=True)   # grey input: the RGB filters summed
    return out, set()
