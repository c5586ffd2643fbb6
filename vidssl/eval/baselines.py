"""Baselines every evaluation reports beside the user's weights: the same architecture at random init, and raw
pixels. :class:`PixelFeatures` has the feature API of a trained backbone (``embed`` and ``dense_features``), so every
evaluation treats all rows of its table the same way.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidssl.eval import weights_row_name
from vidssl.models.base import normalize_rgb


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIE Lab (D65), scaled to roughly [-1, 1] per channel. [B, 3, H, W] -> [B, 3, H, W]."""
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = rgb.new_tensor([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
    xyz = torch.einsum("ij,bjhw->bihw", m, linear)
    xyz = xyz / xyz.new_tensor([0.950456, 1.0, 1.088754]).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    lightness = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([lightness / 50 - 1, a / 110, b / 110], 1)


class PixelFeatures(nn.Module):
    """Raw pixels as features: Lab colour averaged over 8x8 cells (dense) or over a 16x16 grid (pooled).

    Takes [0, 1] RGB (``mean`` 0, ``std`` 1), so callers normalise it like any other backbone.
    """

    arch = "pixels"
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    dense_stride = 8
    cell_offset = 3.5  # a cell is the mean of its 8x8 block
    dense_dim = 3
    grid = 16
    out_dim = 3 * grid * grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float RGB in [0, 1], checked and returned as it is (``mean`` 0, ``std`` 1)."""
        return normalize_rgb(x, self.mean, self.std)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 768]: the image resized to 16x16, in Lab, flattened."""
        small = F.adaptive_avg_pool2d(rgb_to_lab(x.clamp(0, 1)), self.grid)
        return small.flatten(1)

    def dense_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 3, ceil(H/8), ceil(W/8)]: mean Lab colour of each 8x8 cell."""
        return F.avg_pool2d(rgb_to_lab(x.clamp(0, 1)), 8, stride=8, ceil_mode=True)


# the attribute :func:`feature_models` gives each backbone it loads from a file: :func:`weights_provenance` of it, read
# by every evaluation into its metrics.json (a module built in code has none, and its row records no file)
PROVENANCE_ATTR = "weights_provenance"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 of the file at ``path``, read in chunks (a ResNet-50's weights are 100 MB, a ViT's GBs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def weights_provenance(path: str | Path) -> dict:
    """What an evaluation records of a weights file it scored: its resolved path, its SHA-256, the model card read
    for it (the ``.safetensors`` itself where the card rides inside) and that card's ``git_sha`` and training
    ``steps`` / ``total_steps`` (None where the card has none: one written by hand, or an export of older days;
    ``card`` None too for weights without one, loaded with an ``arch`` given)."""
    from vidssl.export import ModelFileError, find_card, read_card

    path = Path(path)
    card_file = find_card(path)  # beside the path as given, as load_backbone looks for it (not beside a link's target)
    try:
        card = read_card(path)
    except ModelFileError:
        card, card_file = {}, None
    else:
        card_file = card_file or path  # none beside it: the .safetensors carries its card inside
    training = card.get("training") if isinstance(card.get("training"), dict) else {}
    return {"path": str(path.resolve()), "sha256": file_sha256(path),
            "card": None if card_file is None else str(card_file.resolve()),
            "git_sha": card.get("git_sha"), "steps": training.get("steps"), "total_steps": training.get("total_steps")}


def weights_record(models: dict[str, nn.Module]) -> dict[str, dict | None]:
    """Per row of ``models``, the :func:`weights_provenance` of the file it was loaded from, or None for a row that
    came from no file (a baseline, or a module passed from code): the evaluations' metrics.json ``weights``."""
    return {name: getattr(model, PROVENANCE_ATTR, None) for name, model in models.items()}


def feature_models(weights: list[str | Path] | tuple = (), arch: str | None = None, seed: int = 0,
                   pixels: bool = True, random_init: bool = True,
                   arch_kwargs: dict | None = None) -> dict[str, nn.Module]:
    """The rows of an evaluation table, in order: each weights file's backbone (named after the file's folder and
    stem; a run folder stands for its backbone.pt), the same architecture at random init with a fixed seed, and raw
    pixels. All in eval mode. Each backbone of a file carries the file's :func:`weights_provenance` as its
    ``weights_provenance`` attribute, which the evaluations record (:func:`weights_record`).

    ``arch`` names the random-init architecture when no weights file is given; with weights files, an explicit
    ``arch`` that disagrees with one of them is an error. Without ``arch``, each distinct architecture among the
    files (with its constructor arguments: ``width``, ``input_size``) gets its own random-init row, so every trained
    model is compared with itself untrained; with ``arch``, the row is built like the first file. Without weights
    files, ``arch_kwargs`` are its constructor arguments (e.g. ``width`` from the config's model section).
    """
    from vidssl import load_backbone
    from vidssl.errors import VidsslError
    from vidssl.export import resolve_weights
    from vidssl.models import build_backbone

    models: dict[str, nn.Module] = {}
    specs: list[dict] = []  # the random-init rows to build: distinct (arch, constructor arguments) of the files
    provenance: dict[Path, dict] = {}  # by resolved path: a file given twice is hashed once
    for path in weights:
        path = resolve_weights(path)  # a run folder -> RUN/backbone.pt, so its row is named like the file's
        model = load_backbone(path)
        # recorded now, right after the load, and once: every evaluation of these models reads it off the module
        # (`vidssl pretrain` scores one load on three tasks), none hashes the file again
        if path.resolve() not in provenance:
            provenance[path.resolve()] = weights_provenance(path)
        setattr(model, PROVENANCE_ATTR, dict(provenance[path.resolve()]))
        name = weights_row_name(path)
        while name in models:
            name += "'"
        models[name] = model
        if arch is not None and arch != model.arch:
            raise VidsslError(f"{path} holds a {model.arch} backbone but --arch is {arch}; drop --arch or match it")
        if (arch is None or not specs) and model.spec() not in specs:  # with --arch: one row, like the first file
            specs.append(model.spec())
    if random_init:
        if not specs:
            if arch is None:
                raise VidsslError("no --weights and no --arch: name the architecture of the random-init baseline")
            specs.append({"arch": arch, **(arch_kwargs or {})})
        for spec in specs:
            kwargs = {k: v for k, v in spec.items() if k != "arch"}
            name = f"{spec['arch']} (random init)"
            if sum(other["arch"] == spec["arch"] for other in specs) > 1:  # two widths of one arch: say which
                name = f"{spec['arch']} {' '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))} (random init)"
            generator_state = torch.random.get_rng_state()
            torch.default_generator.manual_seed(seed)  # the CPU's alone (weights are drawn there): the caller's GPU
            models[name] = build_backbone(spec["arch"], **kwargs).eval()  # generators are left as they were
            torch.random.set_rng_state(generator_state)
    if pixels:
        models["raw pixels"] = PixelFeatures().eval()
    return models
