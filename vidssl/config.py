"""Typed, strict configuration.

Every component owns a dataclass (``MineConfig`` in ``tracking/config.py``, the training sections in
``vidssl/train_config.py``, evaluation sections in ``vidssl/eval/config.py``); :class:`Config` composes them into
the one tree that a YAML file in ``configs/`` describes. Each field carries a ``help`` string in its metadata: it
is the comment written beside the key in ``configs/default.yaml`` (regenerate with
``python -m vidssl.config > configs/default.yaml``; a test keeps the two in sync).

Loading is strict: an unknown key, a wrong type or a malformed ``--set`` override raises :class:`ConfigError`
naming the key and listing the valid ones.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import numbers
import os
import platform
import re
import reprlib
import shlex
import subprocess
import sys
import types
import typing
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tracking.config import IMPLIED_WHEN_ABSENT as MINE_IMPLIED_WHEN_ABSENT
from tracking.config import MineConfig
from vidssl.errors import ConfigError
from vidssl.schema import opt
from vidssl.eval.config import EvalConfig
from vidssl.train_config import (DataConfig, ExportConfig, LossConfig, MinerConfig, ModelConfig, TrainConfig,
                                 check_choice, min_embed_side, pooled_dim)

# "auto" plus vidssl.video.BACKENDS (a test keeps them equal); kept here so loading a config never imports the
# decoders
VIDEO_BACKENDS = ("auto", "decord", "pyav", "opencv")
# top-level keys write_resolved adds beside "config" in RUN/config.yaml; --config ignores them
PROVENANCE_KEYS = frozenset({"versions", "sessions"})


@dataclass
class VideoConfig:
    """video decoding, shared by every stage"""

    backend: str = opt("auto", "decoder: auto (decord, then PyAV, then OpenCV, per file) | decord | pyav | opencv")

    def validate(self) -> None:
        # an unknown name would otherwise fail every video one by one ("skipped (error)") and mine nothing
        check_choice("video", "backend", self.backend, VIDEO_BACKENDS)


@dataclass
class DemoConfig:
    """built-in demo videos (vidssl demo-videos; the default input of vidssl pretrain)"""

    num: int = opt(6, "number of demo clips written when no --videos folder is given")
    seed: int = opt(0, "seed of the demo generator (same seed -> identical clips and ground truth)")
    frames: int = opt(90, "frames per demo clip")
    width: int = opt(320, "demo frame width in pixels")
    height: int = opt(240, "demo frame height in pixels")
    fps: int = opt(25, "demo frame rate")
    mine_box_fraction: float = opt(0.33, "mine.box_fraction used when `vidssl pretrain` mines the demo clips (their "
                                         "objects are 0.30-0.36 of the short side; the real-video default is 0.5)")

    def validate(self) -> None:
        """Checked at load time: the encoder would otherwise fail with a traceback (or a division by zero)."""
        for key, least in (("num", 1), ("frames", 2), ("fps", 1)):
            if getattr(self, key) < least:
                raise ConfigError(f"config key 'demo.{key}': must be >= {least}, got {getattr(self, key)}")
        for key in ("width", "height"):
            value = getattr(self, key)
            if value < 64 or value % 2:  # H.264 in yuv420p halves both sides for the colour planes
                raise ConfigError(f"config key 'demo.{key}': must be an even number >= 64 (H.264 needs even frame "
                                  f"sizes), got {value}")
        if not 0.0 < self.mine_box_fraction <= 0.9:  # it becomes mine.box_fraction, which has this range
            raise ConfigError(f"config key 'demo.mine_box_fraction': must be in (0, 0.9], got "
                              f"{self.mine_box_fraction}")


@dataclass
class PretrainConfig:
    """the one-command pipeline: mine -> train -> export -> evaluate -> report"""

    budget_minutes: float = opt(9.0, "wall-clock budget of `vidssl pretrain`, split between mining, training and the flow "
                                 "decoder; retrieval and DAVIS evaluations run to their end beyond it")
    mine_fraction: float = opt(0.3, "share of the budget mining may take (then it starts no new video and cuts "
                                    "short those being mined)")
    mine_workers: int = opt(2, "parallel mining processes")
    held_out_tail: float = opt(0.2, "with --videos: this last fraction of every video's frames (of its "
                                    "mine.time_range part) is not trained on; its tracks (mined apart, RUN/pairs_held_out) measure "
                                    "instance retrieval across time. 0: train on everything, no such evaluation")
    held_out_patch_context: float = opt(1.0, "the held-out tracks' patches (--videos tails and demo held-out "
                                             "clips) are cut with this mine.patch_context, whatever the training "
                                             "pairs' is: one test set for every setting of it; 1 cuts the tracked "
                                             "box, the instance retrieval across time is about")
    train_fraction: float = opt(0.75, "share of the budget left after mining that training takes (rest: evaluation)")
    run_mine: bool = opt(True, "stage switch: mine pairs")
    run_train: bool = opt(True, "stage switch: train")
    run_export: bool = opt(True, "stage switch: export the backbone")
    run_eval: bool = opt(True, "stage switch: evaluate (retrieval, DAVIS, flow where data exists)")
    run_report: bool = opt(True, "stage switch: write report.html and summary.json")

    def validate(self) -> None:
        checks = (("budget_minutes", self.budget_minutes > 0, "> 0"),
                  ("mine_fraction", 0 < self.mine_fraction <= 1, "in (0, 1] (a share of the budget)"),
                  ("train_fraction", 0 < self.train_fraction <= 1, "in (0, 1] (a share of what mining left)"),
                  ("mine_workers", self.mine_workers >= 1, ">= 1"),
                  ("held_out_tail", 0.0 <= self.held_out_tail <= 0.5, "in [0, 0.5] (a fraction of every video)"),
                  ("held_out_patch_context", 1.0 <= self.held_out_patch_context <= 4.0,
                   "in [1, 4], as mine.patch_context (1: the tracked box itself)"))
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"config key 'pretrain.{key}': must be {want}, got {shown(getattr(self, key))}")


@dataclass
class Config:
    seed: int = opt(0, "global seed: training's initialisation, batch plan, augmentation, negative mining, cycle "
                       "roll and dropout; the evaluations' random-init baseline and flow transfer training; "
                       "show-pairs' sample (mining draws nothing)")
    video: VideoConfig = field(default_factory=VideoConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    mine: MineConfig = field(default_factory=MineConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    miner: MinerConfig = field(default_factory=MinerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def validate(self) -> None:
        """Every section's own checks, then the rules across sections: run when a config is loaded (before `vidssl
        pretrain` spends minutes mining) and again by the trainer, for configs built in code."""
        validate_sections(self)
        for key, value in (("seed", self.seed), ("demo.seed", self.demo.seed)):
            check_seed(key, value)
        arch = self.model.arch
        if self.model.head == "identity" and self.model.embed_dim != pooled_dim(arch, self.model.width):
            raise ConfigError(f"model.head 'identity' passes {arch}'s pooled features through, so model.embed_dim "
                              f"must be their size, {pooled_dim(arch, self.model.width)}; got {self.model.embed_dim}")
        if self.data.patch_size < min_embed_side(arch):
            raise ConfigError(f"config key 'data.patch_size': {arch} takes inputs of at least {min_embed_side(arch)} "
                              f"pixels, got {self.data.patch_size}")
        if self.loss.cycle_weight and self.data.patch_size % 8:
            # the roll moves content by whole stride-8 cells only when the patch is a whole number of cells
            raise ConfigError(f"loss.cycle_weight needs data.patch_size to be a multiple of 8, got "
                              f"{self.data.patch_size}; change it or set loss.cycle_weight=0")
        violators_only = {"hard", "semihard"} & {self.miner.warmup, self.miner.main}
        if self.loss.name == "contrastive" and violators_only and not self.miner.background_negatives:
            # its pull on a pair lives in the pair's triplets: with no violating negative mined it would vanish
            raise ConfigError(f"loss.name 'contrastive' with miner {' and '.join(sorted(violators_only))} needs "
                              "miner.background_negatives=true (each pair keeps its background triplet, and with it "
                              "the pull on the pair); otherwise a pair with no negative inside the margin is not "
                              "pulled together at all. Or use miner.warmup/main 'random'")
        if self.loss.cycle_weight and self.loss.cycle_background and not self.miner.background_negatives:
            # the backgrounds are in the batch only when the miner takes them as negatives
            raise ConfigError("loss.cycle_background needs the pairs' background patches in the batch: set "
                              "miner.background_negatives=true (pairs mined with them) or loss.cycle_background=false")


def check_seed(key: str, value: int) -> None:
    """Seeds are in [0, 2**32): numpy's seed sequences take non-negative integers only (the trainer's per-step
    seeds are hashed from them, vidssl.seeds), and torch seeds its generators with 64 bits."""
    if not 0 <= value < 2 ** 32:
        raise ConfigError(f"config key '{key}': must be in [0, 2**32), got {value}")


def validate_sections(cfg: Any, prefix: str = "") -> None:
    """Run ``validate()`` of every nested section of dataclass ``cfg`` (not ``cfg``'s own), with the loader's type
    checks, so a config built in code is held to what a loaded one is. A value the checks accept in another type
    (numpy's integers and floats, an int for a float) is stored as the field's type, so it saves as YAML."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]) and not isinstance(value, hints[f.name]):
            # a mapping was checked and then dropped, and train() met the dict itself
            raise ConfigError(f"config section '{key}': expected {hints[f.name].__name__}, got "
                              f"{type(value).__name__}: build it as {hints[f.name].__name__}(...), or a whole config "
                              f"from a mapping with vidssl.config.from_dict(Config, {{...}})")
        if dataclasses.is_dataclass(value):
            validate_sections(value, f"{key}.")
            check = getattr(value, "validate", None)
            if check is not None:
                check()
        else:
            setattr(cfg, f.name, _coerce(value, hints[f.name], key))


def check_section(section: Any, key: str, cls: type) -> None:
    """Hold one config section built in code (``key``: its place in a config, e.g. ``eval.davis``; ``cls``: its
    class) to what a loaded one is: types, ranges and choices, as ConfigErrors naming the key."""
    if not isinstance(section, cls):  # a whole Config, or another section, failed as an AttributeError somewhere
        raise TypeError(f"expected the {key} section, a {cls.__name__} (cfg.{key} of a Config), got "
                        f"{type(section).__name__}")
    validate_sections(section, f"{key}.")
    section.validate()


# ----------------------------------------------------------------------------------------------------------------
# strict construction


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _expected(tp: Any) -> str:
    """What a key annotated ``tp`` takes, in a config file's words: ``float | None`` -> "a number or null" (a
    message saying "float | None" named Python's None, which YAML reads as a string)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        words = [_expected(a) for a in args if a is not type(None)]
        return " or ".join(words + (["null"] if type(None) in args else []))
    if origin is typing.Literal:
        return f"one of {list(typing.get_args(tp))}"
    if origin in (list, tuple):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp) or _type_name(tp)


# strings written for "no value" where a key takes null: YAML reads them as text (`null`, `~` only when quoted)
_NULL_LOOKALIKES = {"none", "nil", "null", "~"}


def null_hint(value: Any) -> str:
    """``"; write null (YAML), not None"`` for a string meant as null, else ``""``."""
    if not isinstance(value, str) or value.strip().lower() not in _NULL_LOOKALIKES:
        return ""
    if value.strip().lower() in ("null", "~"):
        return f"; write {value.strip()} unquoted: quoted, YAML reads it as a string"
    return f"; write null (YAML), not {value.strip()}"


def _quoted_hint(value: Any, number: type) -> str:
    """``"; write it unquoted: ..."`` for a string that is a number of type ``number`` (``steps: "1200"``)."""
    if not isinstance(value, str):
        return ""
    try:
        parsed = number(value.strip())
    except ValueError:
        return ""
    # "nan" unquoted is text to YAML too (its NaN is .nan, refused all the same)
    return "; write it unquoted: quoted, YAML reads it as a string" if math.isfinite(parsed) else ""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    if isinstance(value, float) and not math.isfinite(value):
        # NaN would pass every range check (nan < 0 and nan >= 0 are both False); null is the "no limit"
        raise ConfigError(f"config key '{key}': expected a finite number, got {shown(value)}")
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        hint = null_hint(value) if type(None) in args else ""
        raise ConfigError(f"config key '{key}': expected {_expected(tp)}, got {shown(value)}{hint}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"config key '{key}': {shown(value)} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {shown(value)}")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {shown(value)}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {shown(value)}")
        return value
    if tp is int:
        # numbers.Integral: numpy's integers too (a sweep over np.arange), stored as int
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"config key '{key}': expected an integer, got {shown(value)}{_quoted_hint(value, int)}")
        value = int(value)
        if abs(value) >= 2 ** 63:  # torch, numpy and every count downstream hold 64 bits
            raise ConfigError(f"config key '{key}': expected an integer under 2**63, got one of {len(str(value))} "
                              "digits")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"config key '{key}': expected a number, got {shown(value)}{_quoted_hint(value, float)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float's range (1e400 spelled out)
            raise ConfigError(f"config key '{key}': expected a finite number, got an integer of "
                              f"{len(str(abs(value)))} digits") from None
        if not math.isfinite(number):  # a numpy float32 NaN is no float, so the check above let it by
            raise ConfigError(f"config key '{key}': expected a finite number, got {shown(value)}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {shown(value)}")
        return value
    raise ConfigError(f"config key '{key}': unsupported annotation {tp!r}")  # a programming error, caught by tests


class _ShortRepr(reprlib.Repr):
    # a config's values in YAML's words, not Python's: `lr:` with no value "got None" read as the string None
    def repr_NoneType(self, x: None, level: int) -> str:  # noqa: N802 (reprlib's dispatch by type name)
        return "null"

    def repr_bool(self, x: bool, level: int) -> str:
        return "true" if x else "false"

    def repr_date(self, x, level: int) -> str:  # `lr: 2023-01-01` is a date to YAML: "got datetime.date(2023, 1, 1)"
        return x.isoformat()

    repr_datetime = repr_date

    def repr_dict(self, x: dict, level: int) -> str:  # reprlib sorts the keys: a message should show them as given
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}" for k, v in list(x.items())[:self.maxdict]]
        return "{" + ", ".join(items) + (", ..." if len(x) > self.maxdict else "") + "}"


_SHORT = _ShortRepr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 6, 6, 6, 200, 200


def shown(value: Any) -> str:
    """``repr(value)`` for a message, cut short: YAML aliases nest a value of a few bytes in the file whose full repr
    takes gigabytes (a config from elsewhere ran the error message out of memory)."""
    return _SHORT.repr(value)


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, strictly: unknown keys and wrong types raise ConfigError."""
    where = prefix or "<top level>"
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{where}': expected a mapping, got {shown(data)}")
    hints = typing.get_type_hints(cls)
    unknown = unknown_keys(cls, data, prefix)
    if unknown:  # all of them, this section's and its sections': a file with three typos is fixed in one go
        raise ConfigError(unknown_keys_text([(None, *u) for u in unknown]))
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check()
    return obj


def unknown_keys(cls: type, data: Any, prefix: str = "") -> list[tuple[Any, type, str, Any]]:
    """``(name, section class, section prefix, value)`` of every key in mapping ``data`` that dataclass ``cls`` or
    its sections lack: a section's own (sorted) before those of its sections (in field order), as from_dict met
    them one at a time."""
    if not isinstance(data, dict):
        return []  # a section given a plain value: the type check names it
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    found = [(name, cls, prefix, data[name]) for name in sorted(set(data) - set(fields), key=str)]
    for name in fields:
        if name in data and dataclasses.is_dataclass(hints[name]):
            found += unknown_keys(hints[name], data[name], f"{prefix}.{name}" if prefix else name)
    return found


def _key_paths(cls: type = Config, prefix: str = "") -> list[str]:
    """Every key of ``cls`` and of its sections, sections included, dotted from the top: seed, train, train.lr..."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        out.append(prefix + f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out += _key_paths(hints[f.name], f"{prefix}{f.name}.")
    return out


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _nested_yaml(dotted: str, value: Any) -> str:
    """``value`` under the dotted key as a YAML file writes it: ``train.lr``, 0.01 -> ``train:\\n  lr: 0.01``."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return yaml.dump(value, Dumper=_YamlDumper, default_flow_style=False, sort_keys=False)


def _invisible_characters(name: str) -> str:
    """``" (it holds U+FEFF (ZERO WIDTH NO-BREAK SPACE), which does not show: retype it)"`` for a key holding
    characters a terminal does not show as themselves (a byte-order mark mid-file where files were joined, a zero-width
    or non-breaking space pasted from a web page); else ``""``."""
    odd = [c for c in dict.fromkeys(name)
           if unicodedata.category(c) in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp") or (c.isspace() and c != " ")
           or (unicodedata.category(c) == "Zs" and c != " ")]
    if not odd:
        return ""
    named = ", ".join(f"U+{ord(c):04X} ({unicodedata.name(c, 'a control character')})" for c in odd)
    return f" (it holds {named}, which does not show: retype it)"


def unknown_key_text(name: Any, cls: type, prefix: str, value: Any, first: bool = True, source: str = "") -> str:
    """What is wrong with the unknown key ``name`` of section ``prefix`` (class ``cls``) and what was meant;
    ``source`` (the --set that gave it) is named beside the key. The valid keys are listed when ``first`` (none
    listed yet for its section in the message; else the others are pointed to them)."""
    key = f"{prefix}.{name}" if prefix else str(name)
    hidden = _invisible_characters(str(name))
    if hidden:  # "unknown config key 'model'; did you mean 'model'?" of a key holding a byte-order mark
        key = f"{prefix}.{ascii(name)[1:-1]}" if prefix else ascii(name)[1:-1]
    head = f"unknown config key '{key}'" + (f" ({source})" if source else "") + hidden
    paths = _key_paths() if cls is Config or prefix else []  # a dataclass of its own: no tree to look in
    if isinstance(name, str) and "." in name:
        # `train.lr: 0.01` in a YAML file: a real key in --set's spelling, not an unknown one to guess at
        meant = next((k for k in ([f"{prefix}.{name}"] if prefix else []) + [name] if k in paths), None)
        if meant is not None:
            # the layout is the point: a value shown cut short (nested YAML aliases: megabytes), or one YAML cannot
            # write (numpy's, built in code), stands as VALUE
            try:
                block = _nested_yaml(meant, value if "..." not in shown(value) else "VALUE")
            except yaml.YAMLError:
                block = _nested_yaml(meant, "VALUE")
            return (f"{head}; '{name}' is --set syntax (--set {meant}=...); in a YAML file "
                    "write it nested:\n" + "\n".join("    " + line for line in block.rstrip("\n").split("\n")))
    fields = [f.name for f in dataclasses.fields(cls)]
    hints = []
    # the key of another section (`data.lr`, `--set lr=0.01`): difflib, looking in this section only, missed it
    elsewhere = [p for p in paths if p.rsplit(".", 1)[-1] == str(name)]
    if elsewhere:
        owners = [f"{p.rsplit('.', 1)[0]} ({p})" if "." in p else f"the top level ({p})" for p in elsewhere]
        hints.append(f"'{name}' is a key of {_and(owners)}")
    close = difflib.get_close_matches(str(name), fields, n=1)
    if close:
        hints.append(f"did you mean '{prefix + '.' if prefix else ''}{close[0]}'?")
    if first:
        hints.append(f"valid keys in '{prefix or '<top level>'}': {', '.join(sorted(fields))}")
    elif not hints:
        hints.append(f"not a key of '{prefix or '<top level>'}' (its valid keys are listed above)")
    return f"{head}; " + "; ".join(hints)


def unknown_keys_text(unknown: list[tuple[str | None, Any, type, str, Any]]) -> str:
    """One message for every unknown key: ``(source, name, section class, prefix, value)``, source a config file's
    label ("config file X") or a --set text (None: no source to name). The first key's line reads as a lone
    unknown key's does; each other key is a line of its own, with the --set that gave it (the first key's too when
    there are several), and each section's valid keys are listed once."""
    lines, listed = [], set()
    for i, (source, *rest) in enumerate(unknown):
        in_file = source is not None and source.startswith("config file ")
        named = source if source and not in_file and len(unknown) > 1 else ""
        text = unknown_key_text(*rest, first=rest[2] not in listed, source=named)
        if "; valid keys in '" in text:  # a dotted key's line lists none
            listed.add(rest[2])
        if i == 0:
            lines.append(f"{source}: {text}" if in_file else text)
        else:
            lines.append("  " + text.replace("\n", "\n  "))
    return "\n".join(lines)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def flat_dict(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Every leaf of nested ``tree`` under its dotted key (a config as YAML reads it, e.g. a run's config.yaml)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flat_dict(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def flat_config(cfg: Any) -> dict[str, Any]:
    """Every leaf of ``cfg`` under its dotted key, as ``--set`` names it: ``{"seed": 0, "train.lr": 0.02,
    "eval.davis.topk": 10, ...}``."""
    return flat_dict(to_dict(cfg))


# keys added later whose default is not what runs before them did: a record without the key ran as this value
# (before eval.retrieval.max_tracks, every track was evaluated; before data.box_view, the whole patch was cropped)
IMPLIED_WHEN_ABSENT = {"eval.retrieval.max_tracks": 0, "data.box_view": 0.0,
                       **{f"mine.{k}": v for k, v in MINE_IMPLIED_WHEN_ABSENT.items()}}


def settings_of_older_records() -> dict[str, Any]:
    """The flat config a recorded run's config is read over (as JSON reads back: tuples are lists): a key a later
    version added counts as its default, what an older run did, but for :data:`IMPLIED_WHEN_ABSENT`."""
    return {**json.loads(json.dumps(flat_config(Config()))), **IMPLIED_WHEN_ABSENT}


def _merge(base: dict, update: dict, where: str = "", sections: dict | None = None) -> dict:
    """``base`` with ``update`` on top, section by section. A section's keys (``sections``: the defaults, whose
    mappings are the sections) set where ``base`` holds a plain value (a file's `train: 5`, or `--set
    model=resnet18` before `--set model.width=64`) are refused: the section would replace the value, and the
    mistake never reach the check of its type. Keys under a plain key (`train.lr.x`) are left to that check."""
    out = dict(base)
    sections = sections or {}
    for k, v in update.items():
        if isinstance(v, dict) and k in out and not isinstance(out[k], dict) and isinstance(sections.get(k), dict):
            raise ConfigError(f"config key '{where}{k}' is a section, but the config file or an earlier --set gave it "
                              f"the value {shown(out[k])}; set its keys instead, e.g. {where}{k}.KEY=VALUE")
        out[k] = (_merge(out[k], v, f"{where}{k}.", sections.get(k) if isinstance(sections.get(k), dict) else None)
                  if isinstance(v, dict) and isinstance(out.get(k), dict) else v)
    return out


class _YamlLoader(yaml.SafeLoader):
    """Numbers are read as YAML 1.2 and Python read them: YAML 1.1 reads ``1e-3`` (no dot) as a string, ``010`` as
    octal 8 and ``1:30`` as 90 (base 60). Keys are the names written: YAML 1.1 reads ``on:``, ``yes:`` or ``1:`` as a
    boolean or a number, and the unknown-key error then named ``True``. A key given twice in one mapping is an error
    (PyYAML keeps the last one silently: a second ``train:`` section would drop the first)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may repeat keys: it is meant to
                continue
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag in _IMPLICIT_KEY_TAGS:
                key_node.tag = "tag:yaml.org,2002:str"
            try:
                key = self.construct_object(key_node, deep=True)
                hash(key)
            except (TypeError, yaml.YAMLError):  # an unhashable key: PyYAML's own check below says so
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"in the mapping starting at line {node.start_mark.line + 1}", node.start_mark,
                    f"key '{key}' appears twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# the tags a plain (unquoted) scalar gets by its look; a key that got one is read as the text written instead
_IMPLICIT_KEY_TAGS = {f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float", "null", "timestamp")}
_YamlLoader.yaml_implicit_resolvers = {  # YAML 1.1's booleans (yes, no, on, off) and numbers (octal 010, base-60
    # 1:30 and 1:30.5) out; 1.2's below
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_YamlLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_YamlLoader.add_implicit_resolver(_INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                  list("-+0123456789"))


def _yaml12_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text.startswith(("0o", "0x")) else int(text, 10)


_YamlLoader.add_constructor(_INT, _yaml12_int)
_YamlLoader.add_implicit_resolver(
    _FLOAT,
    # no digit separators, as in YAML 1.2 and as for integers (`1_000` is a string either way)
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9]+[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


class _YamlDumper(yaml.SafeDumper):
    """Quotes every string that a reader would take for something else. PyYAML leaves a string plain when YAML 1.1
    reads it as one, but this module reads numbers as YAML 1.2 does: ``"1e3"`` or ``"0o17"`` written plain came back
    as numbers, and a run's config.yaml did not load as ``--config``. Quoted too: what YAML 1.1 (yaml.safe_load, as
    other tools read the file) takes for a non-string, such as ``"1:30"``."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    try:
        plain = _yaml(value) == value and yaml.safe_load(value) == value
    except Exception:  # noqa: BLE001 - YAMLError, and e.g. ValueError from a date such as 2023-13-45: quote it
        plain = False
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=None if plain else '"')


_YamlDumper.add_representer(str, _represent_str)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.lr=0.01'`` -> (['train', 'lr'], 0.01). The value is parsed as YAML (so ``true``, ``[1, 2]`` work)."""
    if "=" not in text:
        raise ConfigError(f"malformed override '{text}': expected section.key=value, e.g. train.lr=0.01")
    key, raw = text.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"malformed override '{text}': expected section.key=value, e.g. train.lr=0.01")
    try:
        value = _yaml(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError) as e:  # ValueError: a date such as 2023-13-45, `!!float abc`
        context = getattr(e, "context", None)
        problem = (getattr(e, "problem", None) or " ".join(str(e).split())) + (f" ({context})" if context else "")
        why = _yaml_syntax_in(raw)
        fix = f"; {why}: quote it{_quoted_example(key, raw)}" if why else ""
        raise ConfigError(f"malformed override '{text}': value is not valid YAML: {problem}{fix}") from None
    dropped = _dropped_syntax(raw)
    if dropped:  # parsed, but not as written: `arch=resnet18 # x` read as resnet18, `[&b bear]` as [bear]
        raise ConfigError(f"malformed override '{text}': YAML reads {dropped} and drops it; if it is part of the "
                          f"value, quote the value{_quoted_example(key, raw)}, else leave it out")
    return parts, value


_QUOTED = re.compile(r"'(?:[^']|'')*'" + r'|"(?:[^"\\]|\\.)*"')  # one whole YAML-quoted scalar

# characters that start YAML syntax (alias, anchor, tag, directive, reserved, block scalar) where a value begins
_YAML_INDICATORS = "*&!%@`|>"


def _flow_items(raw: str) -> list[str] | None:
    """The items of a flat flow list, ``[a, *b]`` -> ['a', '*b']; None for any other value."""
    text = raw.strip()
    if not (text.startswith("[") and text.endswith("]")) or any(c in text[1:-1] for c in "[]{}"):
        return None
    # a quoted item may hold a comma: 'a, b' is one
    items = re.findall(r"""\s*('(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^,]+)""", text[1:-1])
    return [item.strip() for item in items if item.strip()]


def _yaml_syntax_in(raw: str) -> str | None:
    """Why plain text in a --set value is read as YAML syntax (a glob such as */alley_1/* starts an alias), or
    None."""
    for item in [raw.strip()] + (_flow_items(raw) or []):
        if item[:1] and item[0] in _YAML_INDICATORS:
            return f"YAML reads a leading {item[0]} ({item}) as syntax, not text"
    if " #" in raw:  # before ': ', which a {key: value} value holds rightly
        return "YAML reads ' #' as the start of a comment"
    if ": " in raw:
        return "YAML reads ': ' as the separator of a key and its value"
    return None


def _dropped_syntax(raw: str) -> str | None:
    """What of ``raw`` (valid YAML) is syntax that leaves no trace in the value: a comment (its text dropped) or an
    anchor (`&x` alone is null)."""
    tokens = list(yaml.scan(raw, Loader=_YamlLoader))
    for before, after in zip(tokens, tokens[1:]):
        gap = raw[before.end_mark.index:after.start_mark.index]
        if "#" in gap:  # a # inside a scalar (a#b, 'a # b') is part of that scalar's token
            return f"'{gap[gap.index('#'):].splitlines()[0]}' as a comment"
        if isinstance(after, yaml.AnchorToken):
            return f"'&{after.value}' as an anchor"
    return None


def _quoted_example(key: str, raw: str) -> str:
    """``, e.g. --set "eval.flow.pairs=['*/alley_1/*']"``: the value's text quoted for YAML (each item of a flat
    list) inside quotes for the shell; ``""`` where no such spelling is simple."""
    items = _flow_items(raw)
    if items is None and raw.strip()[:1] in ("[", "{"):
        return ""  # nested: which of its strings to quote is the user's to say
    if any(item[:1] in ("'", '"') and not _QUOTED.fullmatch(item) for item in items or [raw.strip()]):
        return ""  # quoted, then more ('resnet18' # note): quoting it again would give the same refused value

    def arg(q: str) -> str:
        def quoted(item: str) -> str:
            return item if item[:1] in ("'", '"') else q + (item.replace("'", "''") if q == "'" else item) + q
        return f"{key}=" + (quoted(raw.strip()) if items is None else "[" + ", ".join(map(quoted, items)) + "]")

    single, double = arg("'"), arg('"')
    # the shell acts on $ ` \ ! " inside its double quotes (! at a prompt); YAML on \ and " inside its own
    if not any(c in single for c in '"$`\\!'):
        return f', e.g. --set "{single}"'
    if not any(c in raw for c in "'\"\\"):
        return f", e.g. --set '{double}'"
    return f", e.g. --set {shlex.quote(single)}"


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``section.key=value`` overrides.

    ``path`` may also be a ``config.yaml`` that vidssl wrote into an output folder (:func:`write_resolved`): its
    ``config`` mapping is used and the provenance beside it ignored, so ``--config RUN/config.yaml`` repeats a run.
    """
    base = to_dict(Config())
    file_data = {} if path is None else _without_empty_sections(_read_config_file(Path(path)), base)
    # every unknown key at once, each with where it was written (from_dict would name only the merged result's)
    unknown = [(f"config file {path}", *u) for u in unknown_keys(Config, file_data)]
    data = file_data
    for text in overrides:
        parts, value = parse_override(text)
        patch: Any = value
        for part in reversed(parts):
            patch = {part: patch}
        unknown += [(f"--set {text}", *u) for u in unknown_keys(Config, patch)]
        data = _merge(data, patch, sections=base)
    if unknown:
        raise ConfigError(unknown_keys_text(unknown))
    try:
        return from_dict(Config, _merge(base, data))
    except ConfigError as e:
        # name the file when the mistake is in it (the overrides alone may be to blame: then they are named)
        if path is not None and _error_of(_merge(base, file_data)) == str(e):
            raise ConfigError(f"config file {path}: {e}") from None
        raise


def _without_empty_sections(data: dict, defaults: dict) -> dict:
    """``data`` (a config file's mapping) without the sections written with no key: `train:` alone, every key
    under it commented out, is null in YAML and keeps the defaults. A `--set train=null` is still refused."""
    out = {}
    for key, value in data.items():
        if isinstance(defaults.get(key), dict):
            if value is None:
                continue
            if isinstance(value, dict):
                value = _without_empty_sections(value, defaults[key])
        out[key] = value
    return out


def _error_of(data: dict) -> str | None:
    """The ConfigError message building a Config from ``data`` gives, or None when it builds."""
    try:
        from_dict(Config, data)
    except ConfigError as e:
        return str(e)
    return None


def _read_config_file(p: Path) -> dict:
    """The mapping in the YAML file ``p``, unwrapped when it is a resolved ``config.yaml``; errors are one line."""
    if not p.is_file():
        from vidssl.io import special_file

        special = special_file(p)
        if special is not None:  # refused: a pipe without a writer blocks
            raise ConfigError(f"{p} is not a regular file ({special}: write the YAML to a file and pass that)")
        what = "is a folder, not a config file" if p.is_dir() else "config file not found"
        raise ConfigError(f"{what}: {p}; pass a YAML file such as configs/default.yaml")
    try:
        text = p.read_text(encoding="utf-8")
        loaded = _yaml(text)
    except UnicodeDecodeError as e:  # where: a Latin-1 "é" in a comment is one byte among hundreds
        raw = p.read_bytes()
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"config file {p} is not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line}; save it as "
                          "UTF-8") from None
    except yaml.reader.ReaderError as e:  # PyYAML names a "<unicode string>" and a character offset
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        char = chr(e.character) if isinstance(e.character, int) else str(e.character)
        raise ConfigError(f"config file {p} is not valid YAML at line {line}, column {column}: character U+"
                          f"{ord(char):04X} ({unicodedata.name(char, 'a control character')}) is not allowed; "
                          "remove it") from None
    except yaml.YAMLError as e:
        problem = str(getattr(e, "problem", None) or "")
        # PyYAML's own words ("found character '\\t' that cannot start any token") do not say what to do
        tab = "; indent with spaces, not tabs" if "'\\t'" in problem or "tab character" in problem else ""
        raise ConfigError(f"config file {p} is not valid YAML{_yaml_error_text(e)}{tab}") from None
    except ValueError as e:  # a date no calendar has (2023-13-45), `!!float abc`: the constructor's own error
        raise ConfigError(f"config file {p} is not valid YAML: {' '.join(str(e).split())}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p}: top level must be a mapping of sections")
    mined = loaded.get("config")
    sections = {f.name for f in dataclasses.fields(Config)}
    if isinstance(mined, dict) and mined and not set(mined) & sections and (
            # or from another version, whose mine keys differ: a mining record names its backend beside them
            set(mined) <= {f.name for f in dataclasses.fields(MineConfig)} or "video_backend" in loaded):
        # PAIRS/mine.json (or dataset.json): its `config` holds the mine section's keys without the section, so
        # "put it under 'config:'" would fail again on every key. The settings in a loadable form: `vidssl mine`
        # writes PAIRS/config.yaml, `vidssl pretrain` RUN/config.yaml above RUN/pairs
        found = [c for c in (p.parent / "config.yaml", p.parent.parent / "config.yaml") if recorded_config(c)]
        use = (f"use {found[0]} (the resolved config written with it)" if found else
               "use the config.yaml `vidssl mine` writes beside it (PAIRS/config.yaml; under `vidssl pretrain`, "
               "RUN/config.yaml)")
        raise ConfigError(f"config file {p} is a pair dataset's record of the settings it was mined with (its "
                          f"'config' holds mine keys), not a config file: {use}, or put its 'config' settings under "
                          "'mine:' in a YAML file (and its video_backend as video: backend:)")
    if "config" in loaded and set(loaded) - {"config"} <= PROVENANCE_KEYS:
        loaded = loaded["config"]  # a resolved config.yaml; "config" is no section name, so this is unambiguous
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p}: 'config' must be a mapping of sections")
    elif "config" in loaded:  # a resolved config.yaml edited by hand: a key written beside its config mapping
        extra = sorted(map(str, set(loaded) - {"config"} - PROVENANCE_KEYS))
        raise ConfigError(f"config file {p} is a resolved config.yaml with {', '.join(map(repr, extra))} beside "
                          f"'config:'; put {'it' if len(extra) == 1 else 'them'} under 'config:' (into the section of "
                          f"that name there, if it has one), or write a plain config file of sections")
    return loaded


def _yaml_error_text(e: yaml.YAMLError) -> str:
    """`` at line L, column C: <problem> (<context>)``: PyYAML's own text spans several lines with a source excerpt."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or " ".join(str(e).split())
    context = getattr(e, "context", None)
    return f"{where}: {problem}" + (f" ({context})" if context else "")


# ----------------------------------------------------------------------------------------------------------------
# provenance


def _checkout(root: str | os.PathLike | None) -> Path:
    return Path(__file__).resolve().parent.parent if root is None else Path(root).resolve()


def git_sha(root: str | os.PathLike | None = None) -> str | None:
    """The SHA of the vidssl checkout (or of the checkout at ``root``), ``-dirty`` when tracked files have changes;
    None when not installed from a git checkout."""
    root = _checkout(root)
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split("\n")
    # installed (not editable) into a virtualenv inside the user's own project: git finds that project's checkout
    # above site-packages, whose SHA is no version of vidssl
    if out.returncode != 0 or len(lines) < 2 or Path(lines[0]).resolve() != root:
        return None
    sha = lines[1].strip()
    try:  # a large checkout on a slow disk: the SHA without the flag rather than a failed run
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return sha
    return sha + ("-dirty" if dirty else "")


def git_state(root: str | os.PathLike | None = None) -> dict:
    """``{"git_sha": git_sha(root), "git_diff_sha256": ...}``: the SHA-256 of ``git diff HEAD --binary`` of a checkout
    whose tracked files have changes, so that a ``-dirty`` SHA says which (two runs of one edit match, of two edits
    differ); None when clean or unknown. Asks git for the SHA once."""
    sha = git_sha(root)
    digest = None
    if sha is not None and sha.endswith("-dirty"):
        try:
            out = subprocess.run(["git", "-C", str(_checkout(root)), "diff", "HEAD", "--binary"], capture_output=True,
                                 timeout=10)
            if out.returncode == 0 and out.stdout:
                digest = hashlib.sha256(out.stdout).hexdigest()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return {"git_sha": sha, "git_diff_sha256": digest}


def versions() -> dict:
    """Versions of vidssl, Python and every library whose behaviour changes results."""
    from vidssl import __version__

    out: dict = {"vidssl": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
                 **git_state()}
    for name, module, dists in (("torch", "torch", ("torch",)), ("torchvision", "torchvision", ("torchvision",)),
                                ("opencv", "cv2", ("opencv-contrib-python", "opencv-python")),
                                ("pyav", "av", ("av",)), ("decord", "decord", ("decord",)),
                                ("numpy", "numpy", ("numpy",))):
        out[name] = _version(module, dists)
    return out


def _version(module: str, dists: tuple[str, ...]) -> str | None:
    """The version of the installed distribution, else of the imported module (a source build without metadata);
    None when absent. The distribution first: a module's ``__version__`` can be spelled otherwise (torch's
    ``2.14.1+cu130`` for the wheel ``2.14.1``), and a record must not depend on what the process had imported when
    it was written (the evaluations' and the run's config.yaml differed so). Nothing is imported to read it:
    torch alone would cost a mining-only process ~800 MB."""
    from importlib import metadata

    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if module in sys.modules:
        try:
            return str(sys.modules[module].__version__)  # torch: a str subclass yaml cannot dump
        except AttributeError:
            pass
    return None


def recorded_config(path: str | os.PathLike) -> dict | None:
    """The ``config`` mapping of a resolved config.yaml that vidssl wrote (:func:`write_resolved`), or None."""
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):  # ValueError: not UTF-8
        return None
    return config if isinstance(config, dict) else None


def written_by_vidssl(path: str | os.PathLike) -> bool:
    """Whether ``path`` reads as :func:`write_resolved` writes: a ``config`` mapping and ``versions`` beside it (no
    other key but PROVENANCE_KEYS), in the exact text the dumper gives, so no comment or layout of a hand-written
    ``--config`` (which :func:`recorded_config` also accepts: the form users copy from a run folder and edit)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        loaded = yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8
        return False
    return (isinstance(loaded, dict) and isinstance(loaded.get("config"), dict) and "versions" in loaded
            and set(loaded) - {"config"} <= PROVENANCE_KEYS
            and yaml.dump(loaded, Dumper=_YamlDumper, sort_keys=False) == text)


def refuse_foreign_config(out: str | os.PathLike, command: str, outputs: tuple[str, ...] = ()) -> None:
    """Before ``vidssl COMMAND`` does any work: OUT/config.yaml, where it writes its resolved config, is replaced
    only where vidssl wrote it. OUT may be the user's own folder (``--out .`` in a project with a config.yaml of
    its own, another tool's, a hand-written ``--config``), which :func:`write_resolved` would overwrite.
    ``outputs``: names of the command's own results; where one stands in OUT, OUT is an earlier run's folder and
    its config.yaml that run's, in whatever text the vidssl of then wrote (the dumper's quoting has changed)."""
    from vidssl.errors import VidsslError

    path = Path(out) / "config.yaml"
    if any(os.path.lexists(Path(out) / name) for name in outputs):
        return
    if os.path.lexists(path) and not written_by_vidssl(path):
        raise VidsslError(f"{path}: not a resolved config vidssl wrote, and `vidssl {command}` writes its config "
                          f"there; nothing was written: choose an empty or new output folder, or move or rename "
                          f"config.yaml in {out}")


def write_resolved(cfg: Config, out_dir: str | os.PathLike, name: str = "config.yaml",
                   sessions: list[dict] | None = None) -> Path:
    """Write the resolved config plus versions into ``out_dir`` atomically; returns the file path. ``sessions``
    (training runs): the versions of every session that trained the run, each with its ``start_step``. ``--config``
    reads the file back (its ``config`` mapping; the keys in PROVENANCE_KEYS are ignored)."""
    from vidssl.io import atomic_write_text

    payload = {"config": to_dict(cfg), "versions": versions()}
    if sessions is not None:
        payload["sessions"] = sessions
    path = Path(out_dir) / name
    atomic_write_text(path, yaml.dump(payload, Dumper=_YamlDumper, sort_keys=False))
    return path


# ----------------------------------------------------------------------------------------------------------------
# commented YAML of the defaults


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-4].strip() if text.endswith("\n...") or text.endswith("...") else text


def commented_yaml(cls: type = Config, indent: int = 0) -> str:
    """The defaults of ``cls`` as YAML with each key's help string as a comment."""
    lines = []
    obj = cls()
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        pad = " " * indent
        help_text = f.metadata.get("help", "")
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().splitlines()
            lines.append(f"{pad}{f.name}:" + (f"  # {doc[0]}" if doc else ""))
            lines.append(commented_yaml(type(value), indent + 2).rstrip("\n"))
        else:
            if not help_text:
                raise ValueError(f"{cls.__name__}.{f.name} has no help string")
            value_text = _yaml_scalar(value)
            lines.append(f"{pad}{f.name}: {value_text}  # {help_text}")
    return "\n".join(lines) + "\n"


def default_yaml() -> str:
    header = ("# vidssl default configuration: every key, its default and what it does.\n"
              "# Generated from the dataclasses by `python -m vidssl.config > configs/default.yaml`; edit those.\n"
              "# Copy a section into your own YAML and pass --config FILE, or override one key: --set train.lr=0.01\n")
    return header + commented_yaml(Config)


if __name__ == "__main__":
    sys.stdout.write(default_yaml())
