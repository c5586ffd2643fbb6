"""The feature API every backbone implements (contract shared with the evaluation code)."""
from __future__ import annotations

import math

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


MIN_SIDE = 32  # the smallest input side every backbone takes (embed() of AlexNet needs more: see its check)


class Backbone(nn.Module):
    """A feature extractor with a pooled and a dense (stride-8) view of the same weights.

    Inputs are RGB in [0, 1] normalised by the caller with ``(x - mean) / std`` (per channel).
    The state dict holds only the backbone's own weights, named as in torchvision where torchvision has the
    architecture. A ResNet export loads into ``torchvision.models.resnet18()`` / ``resnet50()`` with exactly ``fc``
    missing; ``alexnet_wang2015`` keeps torchvision's names but the paper's fc7 (1024, not 4096; fc6 too at input
    sizes whose pool5 grid is not 6x6, i.e. outside 223-254 px), so its ``features.*`` load into
    ``torchvision.models.alexnet().features`` and the whole file into ``vidssl.load_backbone``.
    """

    arch: str
    out_dim: int  # size of embed()'s output
    dense_dim: int  # channels of dense_features()'s output
    dense_stride: int = 8
    cell_offset: float = 0.0  # dense cell (i, j) is centred on input pixel (s i + offset, s j + offset), s the stride
    model_config_keys: tuple[str, ...] = ()  # keys of the `model` config section its constructor takes
    min_embed_side: int = 32  # the smallest input side embed() takes
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # constructor arguments that changed the forward after records (model cards, checkpoints) were written without
    # them, each mapped to the value those records' networks had: such a record rebuilds the network it trained, not
    # the new default (models.recorded_kwargs)
    older_records: dict[str, object] = {}

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.input_size = int(input_size)  # the patch side it was built for (recorded in the model card)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, out_dim] pooled features."""
        raise NotImplementedError

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, dense_dim, ceil(H/8), ceil(W/8)]; any H, W >= 32.

        Cell (i, j) of the four backbones is centred on input pixel (8i, 8j) (receptive fields: smallcnn 59 px,
        alexnet_wang2015 163, resnet18 195, resnet50 267): :attr:`cell_offset` 0; the raw-pixel baseline's cell
        averages the block [8i, 8i + 8), centred on 8i + 3.5. Flow puts each cell's vector at its centre by
        ``cell_offset``; label propagation takes the first frame's labels per 8x8 block and places its output
        there too, which a translation carries along unchanged (the offset cancels between the two)."""
        raise NotImplementedError

    def embed_size_note(self, side: int) -> str | None:
        """Why embed() reads images of side ``side`` otherwise than the patches it was trained on, or None."""
        return None

    def embed_and_dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] -> (embed(x), dense_features(x)); backbones whose two views share layers override it to
        run those once."""
        return self.embed(x), self.dense_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float RGB in [0, 1] -> the normalised input this backbone expects."""
        return normalize_rgb(x, self.mean, self.std)

    def check(self, x: torch.Tensor, min_side: int = MIN_SIDE) -> None:
        """Raise ValueError unless ``x`` is a batch this backbone can take (see :func:`check_input`)."""
        weight = next(self.parameters(), None)
        check_input(x, min_side, weight, input_bound(self.mean, self.std))

    def spec(self) -> dict:
        """What a model card records to rebuild this backbone with ``build_backbone(**spec)``."""
        return {"arch": self.arch, "input_size": self.input_size}


def _check_rgb_batch(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):  # a numpy array of the right shape read "expected [B, 3, H, W], got that"
        raise ValueError(f"expected a torch.Tensor [B, 3, H, W] RGB batch, got {type(x).__module__}."
                         f"{type(x).__name__}" + (": torch.from_numpy(x)" if type(x).__module__ == "numpy" else ""))
    if x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape)
        hint = (" (channels last? x.permute(0, 3, 1, 2))" if len(shape) == 4 and shape[-1] == 3
                else " (grey? x.expand(-1, 3, -1, -1))" if len(shape) == 4 and shape[1] == 1
                else " (one image? x.unsqueeze(0))" if len(shape) == 3 and shape[0] == 3 else "")
        raise ValueError(f"expected a [B, 3, H, W] RGB batch, got shape {shape}{hint}")
    if not x.is_floating_point():
        # uint8 images (torchvision.io.read_image, cv2) would turn into inf or silently wrong features
        raise ValueError(f"expected float RGB in [0, 1], got {x.dtype}: convert with x.float() / 255")


def normalize_rgb(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """[B, 3, H, W] float RGB in [0, 1] -> ``(x - mean) / std`` per channel."""
    _check_rgb_batch(x)
    # 0-255 floats give finite, meaningless features: caught here, with room for a resize's overshoot above 1
    # (NaN-free: a NaN made the max NaN, which no comparison catches)
    bottom, top = (float(v) for v in torch.aminmax(torch.nan_to_num(x, nan=0.0))) if x.numel() else (0.0, 0.0)
    if top > 1.5:
        raise ValueError(f"input values reach {top:g}, but RGB in [0, 1] is expected: divide 0-255 images by 255")
    if bottom < -0.5:  # [-1, 1] images, or a batch normalised already: normalised again, quietly wrong
        raise ValueError(f"input values go down to {bottom:g}, but RGB in [0, 1] is expected: [-1, 1] images take "
                         f"(x + 1) / 2; an already normalised batch goes to embed() / dense_features() directly")
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def input_bound(mean: tuple[float, ...], std: tuple[float, ...]) -> float:
    """The largest |value| :func:`normalize_rgb` passes on from RGB it accepts (in [-0.5, 1.5]), per these stats."""
    return max(max(1.5 - m, m + 0.5) / s for m, s in zip(mean, std))


def check_input(x: torch.Tensor, min_side: int = MIN_SIDE, weight: torch.Tensor | None = None,
                bound: float | None = None) -> None:
    """Raise ValueError naming the fix unless ``x`` is a float [B, 3, H, W] batch of at least ``min_side`` pixels a
    side, on the device of ``weight`` and in its dtype (outside autocast, which casts both), and, given ``bound``
    (:func:`input_bound`), within twice that bound: 0-255 images given to embed() without normalize() gave finite,
    meaningless features."""
    _check_rgb_batch(x)
    if weight is not None and x.device != weight.device:
        raise ValueError(f"input is on {x.device} but the weights are on {weight.device}: move it with "
                         f"x.to('{weight.device}')")
    if weight is not None and x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(f"input is {x.dtype} but the weights are {weight.dtype}: convert with x.to({weight.dtype})")
    if min(x.shape[-2:]) < min_side:
        raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than {min_side} pixels on a side")
    # the values where reading them is cheap: not on meta tensors (no values), nor on an accelerator in a forward
    # autograd records (a training step: the host would wait for the device every step; the trainer normalises)
    cheap = x.device.type == "cpu" or not torch.is_grad_enabled()
    if bound is not None and x.numel() and not x.is_meta and cheap:
        low, high = (float(v) for v in torch.aminmax(x.detach()))
        if math.isnan(low) or math.isnan(high):  # a NaN makes both NaN, which would hide a 0-255 batch
            low, high = (float(v) for v in torch.aminmax(torch.nan_to_num(x.detach(), nan=0.0)))
        if max(-low, high) > 2 * bound:
            raise ValueError(f"input values reach {high if high > -low else low:g}, over twice the +-{bound:.1f} "
                             f"normalised RGB reaches: 0-255 images take model.normalize(x / 255) before embed() or "
                             f"dense_features()")
