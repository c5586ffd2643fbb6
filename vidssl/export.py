"""Backbone files: ``backbone.pt`` (torchvision key names), ``backbone.safetensors`` and ``model_card.json``.

``export_backbone(run_dir, out_path)`` cuts the backbone out of a training run's checkpoint;
``load_backbone(path)`` rebuilds it from the model card beside the weights, in eval mode, ready for features.

Each weights file has its own card, so several exports can share a folder: ``X.pt`` (and ``X.safetensors``) is
described by ``X.model_card.json``, except ``backbone.pt``, whose card keeps the documented name ``model_card.json``
(``vidssl pretrain`` writes ``RUN/backbone.pt``; the report reads ``RUN/model_card.json``).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from vidssl.errors import UsageError, VidsslError, shell_arg
from vidssl.io import (atomic_path, json_object, json_text, newer_format, newer_format_error, special_file,
                       torch_bytes, write_temp)
from vidssl.models import ARCHS, Backbone, build_backbone, recorded_kwargs

log = logging.getLogger(__name__)

CARD_NAME = "model_card.json"
CLASSIFIER_HEAD = {"fc.weight", "fc.bias"}  # torchvision ResNets' ImageNet head, the one key set loading drops
CARD_FORMAT = "vidssl-backbone/1"
DEFAULT_STEM = "backbone"  # RUN/backbone.pt: its card is RUN/model_card.json


class ModelFileError(VidsslError):
    """A weights file or model card that cannot be used (missing, corrupt, or not the architecture it claims)."""


class ExportPathError(ModelFileError, UsageError):
    """An export's RUN or --out that names the wrong kind of thing (a weights file as RUN, a folder or a
    .safetensors name as --out, a name another export holds): an argument mistake, so the CLI exits 2 like
    argparse's own errors and `vidssl compare --out FOLDER`."""


def card_path(weights_path: str | os.PathLike) -> Path:
    """Where the card of ``weights_path`` is written: ``model_card.json`` for ``backbone.pt``, else
    ``<stem>.model_card.json`` (one card per weights file, so a second export into a folder leaves the first
    loadable)."""
    path = Path(weights_path)
    return path.with_name(CARD_NAME if path.stem == DEFAULT_STEM else f"{path.stem}.{CARD_NAME}")


def find_card(weights_path: str | os.PathLike, arch_given: bool = False) -> Path | None:
    """The card describing ``weights_path``: its own (:func:`card_path`), else the ``model_card.json`` that earlier
    versions wrote for every export into a folder, when that card lists the file; one that lists no files (earlier
    versions', or one written by hand for ``backbone.pt``) only where nothing closer speaks for the file: a
    ``.safetensors``'s embedded card, or an architecture the caller names (``arch_given``); else None."""
    path = Path(weights_path)
    own = card_path(path)
    if own.is_file():
        return own
    shared = path.with_name(CARD_NAME)
    if not shared.is_file():
        return None
    try:
        files = json.loads(shared.read_text(encoding="utf-8")).get("files")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return shared  # read_card reports what is wrong with it
    if files is None:
        return shared if not arch_given and _embedded_card(path) is None else None
    return shared if path.name in files else None


def resolve_weights(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/backbone.pt`` for a run folder; a ModelFileError naming what is missing."""
    path = Path(path)
    if path.is_dir():
        if (path / f"{DEFAULT_STEM}.pt").is_file():
            return path / f"{DEFAULT_STEM}.pt"
        hint = (f"export it first: vidssl export {shell_arg(path)} --out {shell_arg(path / (DEFAULT_STEM + '.pt'))}"
                if (path / "checkpoint.pt").is_file() or (path / "train" / "checkpoint.pt").is_file()
                else "pass the weights file (a .pt or .safetensors)")
        raise ModelFileError(f"{path}: a folder without {DEFAULT_STEM}.pt; {hint}")
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    return path


def check_weights_path(out_path: Path) -> None:
    """Refuse an output path the weights cannot go to, before any file is written (otherwise the error names the
    temporary file beside it)."""
    if out_path.is_dir():
        raise ExportPathError(f"--out {out_path} is a folder; name the weights file, e.g. {out_path / 'backbone.pt'}")
    if out_path.suffix == ".safetensors":  # torch.save's format under that name would not load as one
        raise ExportPathError(f"--out {out_path}: name the .pt file (e.g. {out_path.with_suffix('.pt')}); the "
                              ".safetensors copy is written beside it (export.safetensors)")
    # X.pt and X.pth share X.model_card.json and X.safetensors: a second export would take both from the first
    card = card_path(out_path)
    try:
        files = json.loads(card.read_text(encoding="utf-8")).get("files") if card.is_file() else None
    except (OSError, ValueError, AttributeError):  # not a card this export could take from anyone
        files = None
    if isinstance(files, list):
        ours = {out_path.name, out_path.with_suffix(".safetensors").name}
        owners = [name for name in files if isinstance(name, str) and name not in ours
                  and Path(name).stem == out_path.stem and (out_path.parent / name).is_file()]
        if owners:
            raise ExportPathError(f"--out {out_path}: {card.name} and {out_path.stem}.safetensors there belong to "
                                  f"{owners[0]} (the same name with another suffix); name the export differently, or "
                                  f"remove {owners[0]} first")
    # an export replaces its three files: only where they hold what an export writes (`--out notes.md` replaced the
    # notes); an earlier export's, also one killed before its card, is written again
    copy = out_path.with_suffix(".safetensors")
    for path, holds, what in ((out_path, _holds_weights, "a weights file"),
                              (copy, _holds_safetensors, "the safetensors copy of an export"),
                              (card, _holds_card, "a model card")):
        if os.path.lexists(path) and not holds(path):
            raise ExportPathError(f"--out {out_path}: {path} exists and is not {what} that an export would replace; "
                                  f"nothing was written: choose another --out, or move {path.name} away first")


def _holds_weights(path: Path) -> bool:
    """Whether ``path`` is a torch file of tensors (mapped, not read: a ResNet-50's are 100 MB)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a torch zip, or one holding more than tensors
        return False
    return isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


def _holds_safetensors(path: Path) -> bool:
    """Whether ``path`` is the safetensors copy of an export: an 8-byte header length, then that much JSON whose
    metadata names the architecture (every version's copy does; another model's safetensors file does not)."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size)) if 2 <= size <= 100_000_000 else None
    except (OSError, ValueError):
        return False
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(metadata, dict) and "arch" in metadata


def _holds_card(path: Path) -> bool:
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and "arch" in card


def save_backbone(backbone: Backbone, out_path: str | os.PathLike, card: dict[str, Any] | None = None,
                  safetensors: bool = True) -> Path:
    """Write ``out_path`` (a torch state dict), optionally ``<stem>.safetensors``, and its card (:func:`card_path`)
    beside them, each atomically. ``card`` adds fields (training summary, config, steps) to the architecture record."""
    if not isinstance(backbone, Backbone):  # before any file is written: a card-less weights file misleads
        hint = " (the training model: pass its .backbone)" if isinstance(getattr(backbone, "backbone", None),
                                                                         Backbone) else ""
        raise TypeError(f"save_backbone takes a vidssl Backbone, got {type(backbone).__name__}{hint}")
    out_path = Path(out_path)
    check_weights_path(out_path)
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    st_path = out_path.with_suffix(".safetensors")
    files = [out_path.name] + ([st_path.name] if safetensors else [])
    from vidssl.config import git_sha

    record = {
        "format": CARD_FORMAT,
        "arch": backbone.arch,
        "build_kwargs": {k: v for k, v in backbone.spec().items() if k != "arch"},
        "input_size": backbone.input_size,
        "mean": list(backbone.mean),
        "std": list(backbone.std),
        "input_range": "RGB in [0, 1], then (x - mean) / std per channel",
        "out_dim": backbone.out_dim,
        "dense_dim": backbone.dense_dim,
        "dense_stride": backbone.dense_stride,
        "cell_offset": backbone.cell_offset,  # dense cell (i, j) is centred on pixel (stride i + it, stride j + it)
        "files": files,
        "git_sha": git_sha(),
        **(card or {}),
    }
    card_file = card_path(out_path)
    # the files are written under temporary names, then the previous export's card is removed and they take their
    # names, the card last: a kill in between leaves weights without a card (refused, "export again"), never new
    # weights beside the previous export's card, nor the previous .safetensors beside the new card
    with contextlib.ExitStack() as renamed_in_reverse:  # leaving it renames: weights, then .safetensors, then card
        tmp_card = renamed_in_reverse.enter_context(atomic_path(card_file))
        tmp_st = renamed_in_reverse.enter_context(atomic_path(st_path)) if safetensors else None
        tmp_weights = renamed_in_reverse.enter_context(atomic_path(out_path))
        # serialised in memory, written by Python (see torch_bytes): a write error names the file
        write_temp(tmp_weights, torch_bytes(state), out_path)
        if tmp_st is not None:
            from safetensors.torch import save as safetensors_bytes

            # the card rides inside too: a .safetensors shared on its own still says what it is and loads
            # json_text: NaN (a metric of a step that mined nothing) as null, JSON any reader parses, as in the card
            # "format": "pt" as torch's safetensors files say it (transformers refuses any other value)
            metadata = {"format": "pt", "vidssl_format": CARD_FORMAT, "arch": backbone.arch,
                        "model_card": json_text(record)}
            write_temp(tmp_st, safetensors_bytes(state, metadata=metadata), st_path)
        write_temp(tmp_card, (json_text(record, indent=2) + "\n").encode(), card_file)
        card_file.unlink(missing_ok=True)
        if not safetensors:  # an earlier export's copy would load beside the new card, with the old weights
            st_path.unlink(missing_ok=True)
    return out_path


def _embedded_card(weights_path: Path) -> dict | None:
    """The card a ``.safetensors`` written by :func:`save_backbone` carries in its metadata, or None."""
    if weights_path.suffix != ".safetensors" or not weights_path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(weights_path), framework="pt") as fh:
            text = (fh.metadata() or {}).get("model_card")
        return json.loads(text) if text else None
    except Exception:  # not a readable safetensors file: _read_state reports it
        return None


def read_card(weights_path: str | os.PathLike) -> dict:
    """The model card of ``weights_path``: the file beside it (:func:`find_card`), else the one a ``.safetensors``
    carries inside."""
    path = find_card(weights_path)
    if path is None:
        card = _embedded_card(Path(weights_path))
        if card is not None and newer_format(card.get("format"), CARD_FORMAT):
            raise ModelFileError(newer_format_error(weights_path, card["format"], CARD_FORMAT))
        if card is not None and card.get("arch") in ARCHS:
            return card
        raise ModelFileError(_no_card_message(Path(weights_path), None))
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: not a readable model card ({e}); re-export with `vidssl export`") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"{path}: a model card is a JSON object, got a {type(card).__name__}; re-export with "
                             "`vidssl export`")
    if newer_format(card.get("format"), CARD_FORMAT):  # before its fields are read as this version's
        raise ModelFileError(newer_format_error(path, card["format"], CARD_FORMAT))
    files, name = card.get("files"), Path(weights_path).name
    if isinstance(files, list) and name not in files and any(
            (path.name == CARD_NAME or Path(str(f)).stem == Path(name).stem) and Path(str(f)).suffix != ".safetensors"
            and (path.parent / str(f)).is_file() for f in files):
        # another file's card: earlier versions gave every export in a folder one model_card.json, and X.pt and X.pth
        # share X's card when both exist. A card whose files are gone was renamed with its weights (foo.pt ->
        # foo.pth, backbone.pt -> backbone.pth, or foo.* -> bar.*): it is theirs
        raise ModelFileError(f"{path} describes {', '.join(map(str, files))}, not {Path(weights_path).name} (another "
                             f"export into the same folder replaced its card); re-export it with `vidssl export`")
    if card.get("arch") not in ARCHS:
        raise ModelFileError(f"{path}: 'arch' must be one of {', '.join(ARCHS)}, got {card.get('arch')!r}")
    if not isinstance(card.get("build_kwargs", {}), dict):
        raise ModelFileError(f"{path}: 'build_kwargs' must be an object of constructor arguments, got "
                             f"{card['build_kwargs']!r}")
    return card


def _no_card_message(weights_path: Path, keys_of: str | None) -> str:
    """Why weights without a card do not load, and the ways out; ``keys_of``: the architecture whose keys the file
    holds, when the file was read and one matched (so the hint names it rather than an example)."""
    own = card_path(weights_path)
    renamed = ""
    shared = weights_path.with_name(CARD_NAME)
    if own != shared and shared.is_file():
        files = json_object(shared).get("files")
        if isinstance(files, list) and files and not any((weights_path.parent / str(f)).is_file() for f in files):
            # X.pt needs X.model_card.json: a backbone.pt renamed with its card kept as model_card.json
            renamed = (f" {shared.name} here describes {', '.join(map(str, files))}, gone: if this file was renamed "
                       f"from it, rename the card to {own.name}.")
    arch = keys_of or "resnet18"
    whose = (f"Its keys are {keys_of}'s: load_backbone(path, arch='{keys_of}') in Python (built with {keys_of}'s "
             f"default settings), or write the card" if keys_of else
             "For weights of your own in torchvision's key names (e.g. an ImageNet resnet18 as a baseline), write "
             "the card yourself")
    return (f"{weights_path}: no model card ({own.name}) beside it to say the architecture.{renamed} Copied from a "
            f"run? Copy its card along as {own.name}: the card beside the file it was exported as, "
            f"{CARD_NAME} for a {DEFAULT_STEM}.pt (a run's), <name>.{CARD_NAME} for <name>.pt; or take the .safetensors "
            f"file of the same export, which holds its card; or export again with `vidssl export RUN --out FILE`. "
            f"{whose}: echo '{{\"arch\": \"{arch}\"}}' > {own}" + ("" if keys_of else
                                                                    " (in Python, load_backbone(path, arch=...) "
                                                                    "needs none)"))


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        special = special_file(path)
        if special is not None:  # refused: a pipe without a writer blocks
            raise ModelFileError(f"{path} is not a regular file ({special}: save the weights to a file and pass that)")
        raise ModelFileError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch and safetensors raise many types for truncated or foreign files
        raise ModelFileError(f"{path}: {_why_unreadable(path, e)}") from None
    if isinstance(state, dict) and str(state.get("format", "")).startswith("vidssl-train/"):
        raise ModelFileError(f"{path}: a `vidssl train` checkpoint, not exported weights; `vidssl export RUN --out "
                             "FILE` cuts the backbone out of its run folder")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: expected a state dict of tensors (a backbone.pt from `vidssl export`)")
    return state


def _why_unreadable(path: Path, error: Exception) -> str:
    """What a weights file that does not load is, and what to do. Not torch's own message: for a pickled object it
    suggests weights_only=False, which runs whatever code the file holds."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if path.suffix != ".safetensors" and len(head) == 9 and head[8:9] == b"{":  # 8-byte header length, then JSON
        return f"a safetensors file under another suffix; rename it to {path.with_suffix('.safetensors').name}"
    if path.suffix != ".safetensors" and head[:2] == b"PK" and type(error).__name__ == "UnpicklingError":
        return ("a torch file holding more than tensors (a whole pickled model?), which is not loaded, as it could "
                "run code; save its weights with torch.save(model.state_dict(), FILE)")
    return (f"not a readable weights file ({type(error).__name__}; truncated or of another format); re-export it "
            f"with `vidssl export RUN --out FILE`")


def _exported(card: dict) -> bool:
    """Whether ``card`` is one :func:`save_backbone` wrote (its format and every constructor argument of its day,
    as every version did), not one written by hand as a load error advises (``{"arch": ...}``, perhaps with some
    ``build_kwargs``): only a written record implies the values of arguments added since; a hand-made one means
    today's defaults."""
    return str(card.get("format", "")).startswith("vidssl-backbone/") and isinstance(card.get("build_kwargs"), dict)


def _unfilled(arch: str, **kwargs) -> Backbone:
    """``arch``'s modules on the meta device, holding no numbers: the load fills them in. Built for real, each load
    drew a random init from the caller's global generator (its next draws changed) and spent seconds on AlexNet's
    fully connected layers, only to overwrite them."""
    with torch.device("meta"):
        return build_backbone(arch, **kwargs)


def _fill(backbone: Backbone, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` strictly into an :func:`_unfilled` backbone: the tensors become its parameters, in its own
    dtypes, as a copy into built ones was (a key it lacks is kept for the strict load to name). A RuntimeError for
    what does not fit, as the strict load's own."""
    not_tensors = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:  # .to() below would fail on them with an AttributeError
        raise RuntimeError(f"{len(not_tensors)} values that are no tensor (e.g. {not_tensors[:3]})")
    dtypes = {k: v.dtype for k, v in backbone.state_dict().items()}
    backbone.load_state_dict({k: v.to(dtypes[k]) if k in dtypes else v for k, v in state.items()}, strict=True,
                             assign=True)
    left = [name for name, t in [*backbone.named_parameters(), *backbone.named_buffers()] if t.is_meta]
    if left:  # a tensor outside the state dict (a non-persistent buffer) would hold no numbers
        raise RuntimeError(f"{type(backbone).__name__}: {left} not filled by its state dict")


def _other_arch(state: dict) -> str | None:
    """The architecture whose backbone (at its default settings) has exactly the keys of ``state``, if one has."""
    keys = {k for k in state if k not in CLASSIFIER_HEAD and not k.endswith(".num_batches_tracked")}
    for name in ARCHS:
        if keys == {k for k in _unfilled(name).state_dict() if not k.endswith(".num_batches_tracked")}:
            return name
    return None


def load_backbone(path: str | os.PathLike, arch: str | None = None, map_location: str | torch.device = "cpu",
                  build_kwargs: dict[str, Any] | None = None) -> Backbone:
    """Exported weights (``.pt`` or ``.safetensors``) -> the backbone in eval mode.

    ``path`` may also be a run folder holding ``backbone.pt``. The architecture comes from the file's model card
    (:func:`card_path`); ``arch`` is needed only without a card (it is then built with default arguments, or with
    ``build_kwargs``, e.g. ``{"width": 32}`` for a smallcnn) and must agree with the card when both exist. Loading is
    strict.
    """
    path = resolve_weights(path)
    build_kwargs = dict(build_kwargs or {})
    card_file = find_card(path, arch_given=arch is not None)
    embedded = card_file is None and _embedded_card(path) is not None
    if build_kwargs and (arch is None or card_file is not None or embedded):
        where = ("its card says how to build it" if card_file is not None or embedded else
                 "they are constructor arguments of the arch=... given with them")
        raise ModelFileError(f"{path}: build arguments {build_kwargs} are for weights without a model card; {where}")
    if card_file is None and arch is None and not embedded:
        # read first: a training checkpoint, a pickled model or a foreign file is said as such, and weights in a
        # vidssl architecture's keys are named, rather than a card asked for that would not help
        state = _read_state(path)
        raise ModelFileError(_no_card_message(path, _other_arch(state)))
    if card_file is not None or embedded:
        card = read_card(path)
        if arch is not None and arch != card["arch"]:
            raise ModelFileError(f"{path}: model card says arch '{card['arch']}', but arch='{arch}' was requested")
        try:
            kwargs = card.get("build_kwargs", {})
            if _exported(card):  # the record of a network trained: arguments added since take the value it had
                kwargs = recorded_kwargs(card["arch"], kwargs)
            backbone = _unfilled(card["arch"], **kwargs)
        except (TypeError, ValueError) as e:  # a card written by hand or by another version
            raise ModelFileError(f"{card_file or path}: its build_kwargs {card.get('build_kwargs')} do not build a "
                                 f"{card['arch']} ({e}); re-export with `vidssl export`") from None
    else:
        try:
            backbone = _unfilled(arch, **build_kwargs)
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{path}: {build_kwargs} do not build a {arch} ({e})") from None
    state = _read_state(path)
    missing, unexpected = _key_mismatch(backbone, state)
    counters = [k for k in missing if k.endswith(".num_batches_tracked")]
    if counters:  # saved before BatchNorm counted its batches (torchvision's first ImageNet files): torch's strict
        # load fills the count in for them, and it is unused here (momentum is set)
        state = {**state, **{k: torch.zeros((), dtype=torch.long) for k in counters}}
        missing = [k for k in missing if k not in counters]
    if not missing and set(unexpected) == CLASSIFIER_HEAD:
        # a torchvision classifier's own state_dict (an ImageNet baseline): exactly its head is not a backbone's
        log.info("%s: a classifier's state dict; its head (%s) is left out", path, ", ".join(sorted(CLASSIFIER_HEAD)))
        state = {k: v for k, v in state.items() if k not in CLASSIFIER_HEAD}
        unexpected = []
    if missing or unexpected:
        counts = [f"{len(keys)} {what} (e.g. {keys[:3]})" for what, keys in (("missing keys", missing),
                                                                             ("unexpected keys", unexpected)) if keys]
        raise ModelFileError(f"{path}: weights do not fit arch '{backbone.arch}': {', '.join(counts)}; "
                             f"{_mismatch_hint(backbone, state, card_file, embedded)}")
    expected = backbone.state_dict()
    wrong = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:  # same names, other sizes: another width, head or patch size than the card says
        k = wrong[0]
        settings = (f"{card_file.name}'s" if card_file is not None else "its embedded card's" if embedded
                    else "the given build_kwargs'" if build_kwargs else "its default")
        settable = [key for key in backbone.spec() if key != "arch"]
        example = ", ".join(f"'{key}': ..." for key in settable)
        built_with = "the arguments given" if build_kwargs else "its default arguments"
        fix = ("" if card_file is not None or embedded else
               f"; without a model card the backbone is built with {built_with}: "
               f"give the ones the weights were trained with, load_backbone(path, arch='{backbone.arch}', "
               f"build_kwargs={{{example}}}) "
               f"in Python, or write the card the export writes beside it, {card_path(path)}, holding "
               f"{{\"arch\": \"{backbone.arch}\", \"build_kwargs\": {{...}}}} (the constructor arguments of "
               f"vidssl.models.{type(backbone).__name__}: {', '.join(settable)})")
        raise ModelFileError(f"{path}: weights do not fit arch '{backbone.arch}' with {settings} "
                             f"settings: {len(wrong)} tensors differ in shape, e.g. {k} is {list(state[k].shape)} "
                             f"in the file but {list(expected[k].shape)} here{fix}")
    _fill(backbone, state)
    return backbone.to(map_location).eval()


def _mismatch_hint(backbone: Backbone, state: dict, card_file: Path | None, embedded: bool) -> str:
    """What weights whose keys do not fit ``backbone`` most likely are, and the fix."""
    other = _other_arch(state)
    if other not in (None, backbone.arch):
        return f"these are {other} weights: " + (f"fix arch in {card_file}" if card_file else f"load them as {other}")
    keys = [k for k in state if not k.endswith(".num_batches_tracked")]  # counters: filled in unprefixed
    wrapper = {k.split(".", 1)[0] for k in keys}
    if len(wrapper) == 1 and all("." in k for k in keys):  # saved from a wrapper: DDP's module., a model's backbone.
        prefix = f"{wrapper.pop()}."
        needed = {k for k in backbone.state_dict() if not k.endswith(".num_batches_tracked")}
        if needed <= {k[len(prefix):] for k in keys}:
            return (f"every key starts with '{prefix}' (the state dict of a model wrapping the backbone): save the "
                    f"backbone's own state_dict(), or drop the prefix: {{k.removeprefix('{prefix}'): v for k, v in "
                    "state.items()}")
    if card_file is not None:
        return f"is {card_file.name} from another export?"
    if embedded:
        return "its embedded card does not describe these weights; re-export with `vidssl export`"
    return (f"without a model card it was built as a default {backbone.arch}; these keys are of another model "
            "(vidssl loads the backbones in vidssl.models, in torchvision's key names)")


def _key_mismatch(module: torch.nn.Module, state: dict) -> tuple[list[str], list[str]]:
    expected = set(module.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def _unfit(backbone: Backbone, state: dict, error: RuntimeError) -> str:
    """What of ``state`` did not fit ``backbone`` (``error``: :func:`_fill`'s): the keys missing or unexpected, else
    the first tensor of another shape and how many more (torch names one a line), else the error's own line."""
    missing, unexpected = _key_mismatch(backbone, state)
    keys = ", ".join(f"{len(names)} {kind} (e.g. {names[:3]})" for kind, names in
                     (("missing keys", missing), ("unexpected keys", unexpected)) if names)
    if keys:
        return keys
    lines = [line.strip().rstrip(".") for line in str(error).strip().splitlines() if line.strip()]
    shapes = [line for line in lines if line.startswith("size mismatch")]
    if not shapes:
        return lines[-1]
    return shapes[0] + (f" (and {len(shapes) - 1} more)" if len(shapes) > 1 else "")


def export_backbone(run_dir: str | os.PathLike, out_path: str | os.PathLike, safetensors: bool = True) -> Path:
    """Cut the backbone out of ``run_dir/checkpoint.pt`` (or, for a pretrain run folder, ``run_dir/train/``) into
    ``out_path`` (+ ``.safetensors``, model card)."""
    from vidssl.train import CHECKPOINT, CHECKPOINT_FORMAT, load_checkpoint

    if Path(run_dir).is_file():
        raise ExportPathError(f"{run_dir} is a file; pass the training run folder (the --out of `vidssl train` or "
                              "`vidssl pretrain`), which holds checkpoint.pt")
    check_weights_path(Path(out_path))
    ckpt_path = Path(run_dir) / CHECKPOINT
    if not ckpt_path.is_file() and (Path(run_dir) / "train" / CHECKPOINT).is_file():
        ckpt_path = Path(run_dir) / "train" / CHECKPOINT  # a `vidssl pretrain` run folder: its training is in train/
    if not ckpt_path.is_file():
        raise ModelFileError(f"{run_dir}: no {CHECKPOINT}; train first with `vidssl train PAIRS --out {shell_arg(run_dir)}`")
    foreign = "not a checkpoint `vidssl train` wrote: export the run folder of a vidssl training"
    ckpt = load_checkpoint(ckpt_path, advice=foreign, error=ModelFileError)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{ckpt_path}: {foreign}")
    broken = [k for k, v in ckpt["model"].items()
              if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # written by a version that checked only the loss: such a backbone embeds everything as NaN
        raise ModelFileError(f"{ckpt_path}: non-finite values in {', '.join(broken[:3])}"
                             f"{f' (+{len(broken) - 3} more)' if len(broken) > 3 else ''}: the training diverged; "
                             "train again into a new --out with a lower train.lr")
    spec = dict(ckpt["backbone"])
    arch = spec.pop("arch")
    backbone = _unfilled(arch, **recorded_kwargs(arch, spec))
    prefix = "backbone."
    state = {k[len(prefix):]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    try:
        _fill(backbone, state)
    except RuntimeError as e:  # an edited checkpoint, or one of an architecture that differed: one line, no traceback
        raise ModelFileError(f"{ckpt_path}: its backbone does not fit the {backbone.arch} it records: "
                             f"{_unfit(backbone, state, e)}; export it with the vidssl version that trained it"
                             ) from None
    sessions = ckpt.get("sessions", [])  # checkpoints of earlier versions hold none
    training = {
        "steps": ckpt["step"], "total_steps": ckpt["total_steps"], "complete": ckpt["step"] >= ckpt["total_steps"],
        "data": ckpt["pairs"], "embed_dim": ckpt["embed_dim"], "head": ckpt["head"],
        "world_size": ckpt["world_size"], "final_metrics": ckpt["metrics"], "checkpoint": str(ckpt_path.resolve()),
        "sessions": sessions, "fit_history": ckpt.get("fit_history", []),
    }
    if isinstance(ckpt.get("mining"), dict):  # how the pairs were mined (checkpoints of earlier versions hold none):
        training["mining"] = ckpt["mining"]  # card["config"]'s mine section is only what the train command was given
    from vidssl.config import versions

    # the weights are the training code's, not the exporting code's: git_sha and versions of the last session
    trained_with = ({k: v for k, v in sessions[-1].items() if k not in ("start_step", "settings")} if sessions
                    else None)
    card = {"training": training, "config": ckpt["config"], "git_sha": trained_with and trained_with["git_sha"],
            "versions": trained_with, "exported_with": versions()}
    return save_backbone(backbone, out_path, card, safetensors)
