"""Configuration of the pair loader, model, loss, miner, trainer and export. Composed into vidssl.config.Config."""
from __future__ import annotations

import re
from dataclasses import dataclass

from vidssl.errors import ConfigError
from vidssl.schema import opt

ARCH_NAMES = ("smallcnn", "alexnet_wang2015", "resnet18", "resnet50")  # vidssl.models.ARCHS; kept torch-free here
WIDTH_ARCHS = ("smallcnn",)  # the archs whose model_config_keys hold "width" (tested against vidssl.models)
HEAD_NAMES = ("linear", "mlp", "identity")
# what the rules across config sections need of each arch, torch-free (tested against vidssl.models)
MIN_EMBED_SIDE = {"alexnet_wang2015": 63}  # the smallest input embed() takes; 32 for the others
FIXED_OUT_DIM = {"alexnet_wang2015": 1024, "resnet18": 512, "resnet50": 2048}  # smallcnn: 8 x model.width


def pooled_dim(arch: str, width: int) -> int:
    """embed()'s output size of ``arch`` (``width``: smallcnn's model.width)."""
    return FIXED_OUT_DIM.get(arch, 8 * width)


def min_embed_side(arch: str) -> int:
    return MIN_EMBED_SIDE.get(arch, 32)
# the config sections a training run's result depends on (besides its pairs)
TRAIN_SECTIONS = ("seed", "data", "model", "loss", "miner", "train")
# keys a run may be continued with changed (speed, devices, logging, budget): the result does not depend on them,
# but for the last bits under a changed train.threads (CPU reductions split differently) or train.device (other
# kernels); each session records what it ran with (checkpoint and config.yaml: sessions[].settings)
RESUMABLE_KEYS = frozenset({"train.budget_minutes", "train.fit_budget", "train.device", "train.threads",
                            "train.log_every", "train.image_every", "train.checkpoint_every",
                            "train.checkpoint_minutes", "data.num_workers",
                            "data.prefetch", "train.dist_timeout_minutes"})
# of those, the keys the ranks of one torchrun may set apart: no collective depends on them (log_every,
# checkpoint_every and the budget decide when collectives run, so the ranks must agree on those)
RANK_LOCAL_KEYS = frozenset({"train.device", "train.threads", "train.image_every", "train.checkpoint_minutes",
                             "data.num_workers", "data.prefetch", "train.dist_timeout_minutes"})
LOSS_NAMES = ("ranking", "triplet", "contrastive")
DISTANCE_NAMES = ("cosine", "sqeuclidean", "euclidean")
REDUCER_NAMES = ("mean", "mean_active", "fixed", "per_pair")
MINER_NAMES = ("random", "hard", "semihard")
PRECISION_NAMES = ("auto", "bf16", "fp16", "fp32")  # auto resolves to one of the others (train.resolve_precision)


def check_choice(section: str, key: str, value: str, valid: tuple[str, ...], nullable: bool = False) -> None:
    """``value`` one of ``valid`` (or None where ``nullable``: the error then says null is the spelling)."""
    if value not in valid and not (nullable and value is None):
        from vidssl.config import null_hint

        also = f" or null{null_hint(value)}" if nullable else ""
        raise ConfigError(f"config key '{section}.{key}': {value!r} is not one of {list(valid)}{also}")


def _positive(section: str, key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"config key '{section}.{key}': must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _fraction(section: str, key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"config key '{section}.{key}': must be in [0, 1], got {value}")


@dataclass
class DataConfig:
    """streaming the mined pairs into training batches"""

    patch_size: int = opt(48, "side of the network input in pixels (stored patches are cropped, then resized to it); "
                              "48 kept every held-out tracker where 64 lost one (README: What was tried)")
    crop_min: float = opt(0.5, "random crop: side drawn in [crop_min, 1] x the stored side (1: no crop); with the "
                                 "cycle loss, 0.5 beat 0.8 and 0.3 (README: What was tried)")
    flip: bool = opt(True, "random horizontal flip, drawn independently for each patch of a pair")
    box_view: float = opt(0.5, "pairs mined with mine.patch_context above 1: the chance that a patch (first or "
                                "last, each drawn apart) is cropped from its tracked box instead of the whole stored "
                                "window, so the box and the wider view of it are both trained, each the other's "
                                "positive (it keeps retrieval across time, which the window alone lost: README, What "
                                "was tried); 0: the window always. No effect on pairs whose patch is the box "
                                "(mined with mine.patch_context 1)")
    num_workers: int = opt(1, "DataLoader worker processes (0: load in the main process)")
    prefetch: int = opt(4, "batches each worker prepares ahead")

    def validate(self) -> None:
        if self.patch_size < 32:
            raise ConfigError(f"config key 'data.patch_size': must be >= 32, got {self.patch_size}")
        if not 0.1 <= self.crop_min <= 1.0:
            raise ConfigError(f"config key 'data.crop_min': must be in [0.1, 1], got {self.crop_min}")
        _fraction("data", "box_view", self.box_view)
        _positive("data", "num_workers", self.num_workers, allow_zero=True)
        _positive("data", "prefetch", self.prefetch)


@dataclass
class ModelConfig:
    """the backbone and its embedding head"""

    arch: str = opt("smallcnn", "backbone: " + " | ".join(ARCH_NAMES))
    width: int = opt(32, "smallcnn only (other archs: an error): channels of its first layer (the last has 8x; "
                         "dense_dim = 8 x width)")
    head: str = opt("linear", "head from the pooled features to the embedding: " + " | ".join(HEAD_NAMES))
    embed_dim: int = opt(256, "dimension of the L2-normalised embedding (paper: 1024)")

    def validate(self) -> None:
        check_choice("model", "arch", self.arch, ARCH_NAMES)
        check_choice("model", "head", self.head, HEAD_NAMES)
        _positive("model", "width", self.width)
        if self.arch not in WIDTH_ARCHS and self.width != ModelConfig.width:
            # it would be ignored, yet count as a change of config when a run resumes
            raise ConfigError(f"config key 'model.width' applies to {' and '.join(WIDTH_ARCHS)} only, not to "
                              f"model.arch '{self.arch}'; drop it")
        _positive("model", "embed_dim", self.embed_dim)


@dataclass
class LossConfig:
    """the loss on (anchor, positive, negative) triplets"""

    name: str = opt("ranking", "ranking (paper: hinge on D = 1 - cos) | triplet (FaceNet, squared L2) | "
                               "contrastive (Hadsell et al. 2006, L2)")
    margin: float = opt(0.5, "margin M (paper: 0.5 on 1 - cos)")
    symmetric: bool = opt(True, "also hinge the positive against the negative, as in the released RankHardLoss")
    distance: str | None = opt(None, "override the loss's own distance: cosine (1 - cos) | sqeuclidean | euclidean; "
                                     "null: ranking uses cosine, triplet sqeuclidean, contrastive euclidean")
    reducer: str = opt("fixed", "fixed (sum / (P x K), as the released RankHardLoss; P x (K + 1) with each pair's "
                                "background) | mean (over the mined "
                                "triplets) | mean_active (over those with a non-zero loss) | per_pair (mean over "
                                "each pair's negatives, then over pairs)")
    cycle_weight: float = opt(0.2, "weight of the dense cycle loss added to the ranking loss: each stride-8 cell of "
                                   "a pair's patch walks to the other patch and on to a rolled copy of its own, "
                                   "and must arrive where its content went (losses.dense_cycle_loss); 0: off (the "
                                   "paper)")
    cycle_temperature: float = opt(0.07, "softmax temperature of the cycle loss's walks (on cosine similarity)")
    cycle_background: bool = opt(True, "the cycle's first step may also walk into the pair's same-frame background "
                                       "patch (needs miner.background_negatives): the scene beside the object "
                                       "becomes a place a walk can get lost in")

    def validate(self) -> None:
        check_choice("loss", "name", self.name, LOSS_NAMES)
        _positive("loss", "cycle_weight", self.cycle_weight, allow_zero=True)
        if not self.cycle_temperature >= 0.01:  # smaller, the walk is a hard argmax and 1 / T overflows near 1e-38
            raise ConfigError(f"config key 'loss.cycle_temperature': must be >= 0.01, got {self.cycle_temperature}")
        check_choice("loss", "reducer", self.reducer, REDUCER_NAMES)
        check_choice("loss", "distance", self.distance, DISTANCE_NAMES, nullable=True)
        _positive("loss", "margin", self.margin)


@dataclass
class MinerConfig:
    """negative selection: random, hard, semi-hard, the schedule between them and the collapse guard"""

    negatives_per_pair: int = opt(4, "K negatives per positive pair (paper: 4)")
    warmup: str = opt("random", "miner for the first hard_start of training: " + " | ".join(MINER_NAMES))
    main: str = opt("hard", "miner after hard_start: " + " | ".join(MINER_NAMES))
    hard_start: float = opt(0.3, "fraction of the steps mined with `warmup` (paper: 150K of 400K iterations)")
    hard_ratio: float = opt(0.5, "hard miner: share of the K taken from the K hardest violators; the rest are "
                                 "random violators (released RankHardLoss: hard_ratio)")
    same_video_negatives: bool = opt(False, "allow negatives from the anchor's own video (other tracks)")
    background_negatives: bool = opt(True, "also take each pair's same-frame background patch (the scene beside "
                                             "the tracked box; needs pairs mined with mine.background_patches) as "
                                             "one more negative of that pair, on every step")
    guard_neg_cos: float = opt(0.3, "collapse guard: when the running mean cosine between an anchor and the "
                                    "other videos' patches exceeds this, mine with `warmup` until it falls back")
    guard_momentum: float = opt(0.9, "collapse guard: momentum of that running mean (per step)")
    guard: bool = opt(True, "enable the collapse guard")

    def validate(self) -> None:
        check_choice("miner", "warmup", self.warmup, MINER_NAMES)
        check_choice("miner", "main", self.main, MINER_NAMES)
        _positive("miner", "negatives_per_pair", self.negatives_per_pair)
        _fraction("miner", "hard_start", self.hard_start)
        _fraction("miner", "hard_ratio", self.hard_ratio)
        if not 0.0 <= self.guard_momentum < 1.0:  # at 1 the running mean keeps step 0's value: no guard at all
            raise ConfigError(f"config key 'miner.guard_momentum': must be in [0, 1), got {self.guard_momentum}")
        if not -1.0 <= self.guard_neg_cos <= 1.0:
            raise ConfigError(f"config key 'miner.guard_neg_cos': must be in [-1, 1], got {self.guard_neg_cos}")


@dataclass
class TrainConfig:
    """the optimiser, schedule, devices, checkpoints and logs"""

    batch_pairs: int = opt(64, "P positive pairs per batch (per process under torchrun: a step takes N x P pairs; "
                               "hard negatives are mined within each process's P)")
    steps: int = opt(1200, "optimiser steps (0: use epochs); under torchrun each process takes every step, so N "
                           "processes see N x the pairs (lr is not scaled with N)")
    epochs: float = opt(0.0, "passes over the pairs, used when steps is 0")
    budget_minutes: float | None = opt(5.0, "stop cleanly after this many minutes of training (null: no limit); "
                                             "the schedule is fitted to it (see fit_budget); vidssl pretrain gives "
                                             "training its share of pretrain.budget_minutes instead")
    fit_budget: bool = opt(True, "with a budget, shorten `steps` to what the measured speed fits in it, so the "
                                 "learning rate still anneals; the fitted count is saved and kept on resume")
    lr: float = opt(0.02, "initial learning rate of SGD (paper: 0.001)")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(5e-4, "SGD weight decay")
    schedule: str = opt("cosine", "cosine (to 0) | step (x gamma at each of `milestones`)")
    milestones: list[float] = opt([0.5, 0.75], "step schedule: fractions of the steps where the lr is multiplied by "
                                               "gamma")
    gamma: float = opt(0.1, "step schedule: lr factor at each milestone")
    warmup_steps: int = opt(20, "linear lr warm-up steps")
    device: str = opt("auto", "auto (cuda if available) | cpu | cuda (each process the GPU of its LOCAL_RANK, 0 "
                              "outside torchrun: pick one with CUDA_VISIBLE_DEVICES)")
    precision: str = opt("auto", "auto (bf16 where the hardware computes it: CUDA with bf16, a CPU with AVX512-BF16 "
                                 "or AMX; fp32 elsewhere: an AVX2 CPU emulates bf16, 13x slower than fp32) | bf16 "
                                 "(autocast on CPU and CUDA) | fp16 (CUDA, with a grad scaler) | fp32; the run "
                                 "folder records what auto chose")
    channels_last: bool = opt(True, "channels_last memory format for the model and its input (faster convolutions "
                                    "on CUDA, and on the CPU in our measurements: 1.8x in fp32 on AVX2)")
    threads: int = opt(0, "CPU threads of torch (0: torch's default)")
    deterministic: bool = opt(True, "deterministic algorithms (on CPU, a resumed run then matches an uninterrupted "
                                    "one exactly)")
    checkpoint_every: int = opt(50, "write the rolling checkpoint.pt every N steps (and at the end)")
    checkpoint_minutes: float = opt(1.0, "also write it once this many minutes passed since the last one (0: by "
                                         "steps only): an interruption (Ctrl-C, a kill, a lost machine) loses at "
                                         "most about this much training, however slow the steps")
    log_every: int = opt(10, "JSON-lines and TensorBoard scalars every N steps")
    image_every: int = opt(200, "TensorBoard image grid of the hardest triplets every N steps (0: never)")
    dist_timeout_minutes: float | None = opt(None, "torchrun: how long a process waits at a collective for the others "
                                                   "before it fails the job (one rank hung: stalled storage, a stuck "
                                                   "loader); null: torch's default (30 min gloo, 10 min NCCL). "
                                                   "Longer than rank 0's slowest checkpoint write, which the others "
                                                   "wait for")

    def validate(self) -> None:
        _positive("train", "batch_pairs", self.batch_pairs)
        if self.batch_pairs < 2:
            raise ConfigError("config key 'train.batch_pairs': needs at least 2 pairs per batch for negatives")
        _positive("train", "steps", self.steps, allow_zero=True)
        _positive("train", "epochs", self.epochs, allow_zero=True)
        if self.steps == 0 and self.epochs == 0:
            raise ConfigError("config keys 'train.steps' and 'train.epochs' are both 0: set one of them")
        if self.steps and self.epochs:  # epochs count only with steps 0: a run of 1 epoch trained the 1200 steps
            raise ConfigError(f"config keys 'train.steps' ({self.steps}) and 'train.epochs' ({self.epochs:g}) are both "
                              f"set, and epochs count only when steps is 0: set train.steps=0 to train "
                              f"{self.epochs:g} epoch(s), or train.epochs=0 to train {self.steps} steps")
        if self.budget_minutes is not None:
            _positive("train", "budget_minutes", self.budget_minutes)
        _positive("train", "lr", self.lr)
        _positive("train", "weight_decay", self.weight_decay, allow_zero=True)
        _fraction("train", "momentum", self.momentum)
        check_choice("train", "schedule", self.schedule, ("cosine", "step"))
        if any(not 0 < m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"config key 'train.milestones': increasing fractions in (0, 1), got {self.milestones}")
        _positive("train", "gamma", self.gamma)
        _positive("train", "warmup_steps", self.warmup_steps, allow_zero=True)
        if isinstance(self.device, str) and re.fullmatch(r"cuda:\d+", self.device):  # as eval.*.device takes
            raise ConfigError(f"config key 'train.device': {self.device!r} names a GPU, which training does not: it "
                              "takes the GPU of its LOCAL_RANK (0 outside torchrun); pick the GPU with "
                              f"CUDA_VISIBLE_DEVICES={self.device[5:]} and set train.device=cuda")
        check_choice("train", "device", self.device, ("auto", "cpu", "cuda"))
        check_choice("train", "precision", self.precision, PRECISION_NAMES)
        _positive("train", "threads", self.threads, allow_zero=True)
        for key in ("checkpoint_every", "log_every"):
            _positive("train", key, getattr(self, key))
        _positive("train", "image_every", self.image_every, allow_zero=True)
        _positive("train", "checkpoint_minutes", self.checkpoint_minutes, allow_zero=True)
        if self.dist_timeout_minutes is not None:
            _positive("train", "dist_timeout_minutes", self.dist_timeout_minutes)


@dataclass
class ExportConfig:
    """what `vidssl export` writes"""

    safetensors: bool = opt(True, "also write <name>.safetensors beside the .pt file")
