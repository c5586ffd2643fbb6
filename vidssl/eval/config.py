"""Configuration of the transfer evaluations. Composed into vidssl.config.Config as the `eval` section."""
from __future__ import annotations

from dataclasses import dataclass, field

import re

from vidssl.errors import ConfigError
from vidssl.schema import opt


def is_device_name(name: str) -> bool:
    """auto, cpu, cuda or cuda:N: what torch.device takes here (whether the GPU exists is checked at the run)."""
    return re.fullmatch(r"auto|cpu|cuda(:\d+)?", name) is not None


def is_sequence_name(name: str) -> bool:
    """One folder name (a DAVIS sequence under JPEGImages/480p): joined to the data folder and to the overlay and
    mask folders of --out, an absolute name or a "../" would read and write wherever it points."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name


# vidssl.eval.flow.methods.CLASSICAL's names, kept cv2-free here
CLASSICAL_FLOW = ("zero", "farneback", "dis_ultrafast", "dis_fast", "dis_medium")


@dataclass
class RetrievalConfig:
    """retrieval benchmark (vidssl eval retrieval)"""

    image_size: int = opt(112, "network input side: images are resized (shorter side) and centre-cropped, "
                               "DAVIS crops and track patches resized, to this many pixels")
    batch_size: int = opt(64, "images per feature-extraction batch")
    num_workers: int = opt(2, "DataLoader worker processes decoding images (0: decode in the main process)")
    device: str = opt("auto", "where features and the kNN are computed: auto (cuda if available) | cpu | cuda[:N]")
    min_gap: int = opt(10, "DAVIS instance retrieval: a crop queries only crops of its sequence at least this many "
                           "frames away (and every crop of other sequences)")
    crop_margin: float = opt(0.1, "DAVIS crops: margin added on each side of the mask box, as a fraction of its "
                                  "longer side (the crop is the square around the box)")
    min_object_pixels: int = opt(64, "DAVIS crops: objects with fewer mask pixels in a frame are not cropped")
    chunk_mb: float = opt(256.0, "memory of one kNN block (query rows x references); bounds the kNN's peak memory")
    seed: int = opt(0, "seed of the k-means initialisation (NMI), of the queries shown in the grid and of the tracks "
                       "max_tracks keeps")
    kmeans_iters: int = opt(100, "maximum Lloyd iterations of the k-means behind NMI")
    grid_queries: int = opt(8, "queries (rows) in the PNG grid of nearest neighbours")
    grid_neighbours: int = opt(5, "nearest neighbours shown per query in the PNG grid")
    cub_classes: list[int] = opt([101, 200], "CUB-200-2011 release folder: first and last class id (1-200) "
                                             "evaluated; 101-200 is metric learning's unseen-class test split, "
                                             "[1, 200] every class")
    max_tracks: int = opt(1000, "pair datasets (tracks, the held-out tracks of pretrain): at most this many tracks "
                                "are evaluated, drawn with seed, each with all its patches; the kNN and k-means "
                                "grow with their square (0: every track)")

    def validate(self) -> None:
        checks = (("image_size", self.image_size >= 32, ">= 32 (the backbones' smallest input)"),
                  ("batch_size", self.batch_size >= 1, ">= 1"), ("num_workers", self.num_workers >= 0, ">= 0"),
                  ("min_gap", self.min_gap >= 1, ">= 1 (a query never retrieves itself)"),
                  ("crop_margin", self.crop_margin >= 0, ">= 0"),
                  ("min_object_pixels", self.min_object_pixels >= 1, ">= 1"), ("chunk_mb", self.chunk_mb > 0, "> 0"),
                  ("kmeans_iters", self.kmeans_iters >= 1, ">= 1"), ("grid_queries", self.grid_queries >= 1, ">= 1"),
                  ("grid_neighbours", self.grid_neighbours >= 1, ">= 1"),
                  ("cub_classes",
                   len(self.cub_classes) == 2 and 1 <= self.cub_classes[0] <= self.cub_classes[1] <= 200,
                   "[first, last] class ids with 1 <= first <= last <= 200"),
                  ("max_tracks", self.max_tracks == 0 or self.max_tracks >= 2,
                   "0 (every track) or >= 2 (one track alone: every neighbour is relevant)"),
                  ("device", is_device_name(self.device),
                   "auto, cpu, cuda or cuda:N"))
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"config key 'eval.retrieval.{key}': must be {want}, got {getattr(self, key)!r}")
        from vidssl.config import check_seed

        check_seed("eval.retrieval.seed", self.seed)


MAX_FLOW_FIGURES = 50  # figures are for looking at: a Sintel release's 2,082 would be 2,082 PNGs nobody opens


@dataclass
class FlowConfig:
    """optical-flow transfer benchmark (vidssl eval flow)"""

    classical: list[str] = opt(list(CLASSICAL_FLOW), "reference methods, any of: " + ", ".join(CLASSICAL_FLOW))
    max_displacement: int = opt(4, "correlation radius d in feature cells (x8 px): the largest motion feature "
                                   "methods can express; cost grows with (2d+1)^2")
    temperature: float = opt(0.02, "softmax temperature of the cosine correlation for the zero-shot soft-argmax "
                                   "(transfer learns it from this start); chosen on synthetic pairs, not on Sintel")
    transfer: bool = opt(True, "train and evaluate the FlowNetC-style transfer decoder (off: --no-transfer)")
    budget_minutes: float = opt(3.0, "wall-clock budget of transfer training, all models together (--budget-minutes)")
    steps: int = opt(3000, "at most this many transfer training steps per model")
    finetune: bool = opt(False, "fine-tune the backbone with the decoder (otherwise it stays frozen)")
    lr: float = opt(0.002, "Adam learning rate of the transfer decoder, cosine-decayed over steps or budget")
    backbone_lr: float = opt(1.0e-5, "Adam learning rate of the backbone when finetune is true")
    batch_size: int = opt(8, "synthetic pairs per transfer training step")
    synthetic_size: list[int] = opt([128, 160], "height, width of the synthetic training pairs in pixels")
    max_motion: float = opt(24.0, "largest per-axis translation of a synthetic shape in px (background: half)")
    num_shapes: list[int] = opt([3, 8], "min, max shapes in a synthetic pair")
    checkpoint_seconds: float = opt(30.0, "save transfer training state this often; a killed run resumes from it")
    device: str = opt("auto", "torch device of the feature methods: auto (cuda when available) | cpu | cuda:N")
    figures: bool = opt(True, f"write one PNG per pair (at most {MAX_FLOW_FIGURES}, spread over the pairs): frame 1, "
                              "ground truth and each method's flow with its EPE")
    pairs: list[str] = opt([], "pairs to evaluate: glob patterns over their names, frame 1's path under --data "
                               "without suffix (* also spans /: 'training/clean/alley_1/*', '*/alley_1/*'); empty: "
                               "all (a Sintel release has 2,082)")

    def validate(self) -> None:
        checks = (("max_displacement", self.max_displacement >= 1, ">= 1"),
                  ("temperature", self.temperature > 0, "> 0"),
                  ("budget_minutes", self.budget_minutes >= 0, ">= 0"), ("steps", self.steps >= 0, ">= 0"),
                  ("lr", self.lr > 0, "> 0"), ("backbone_lr", self.backbone_lr > 0, "> 0"),
                  ("batch_size", self.batch_size >= 1, ">= 1"),
                  ("synthetic_size", len(self.synthetic_size) == 2 and min(self.synthetic_size) >= 32,
                   "[height, width], both >= 32"),
                  ("max_motion", self.max_motion >= 0, ">= 0"),
                  ("num_shapes", len(self.num_shapes) == 2 and 0 <= self.num_shapes[0] <= self.num_shapes[1],
                   "[min, max] with 0 <= min <= max"),
                  ("checkpoint_seconds", self.checkpoint_seconds > 0, "> 0"),
                  ("device", is_device_name(self.device),
                   "auto, cpu, cuda or cuda:N"),
                  ("classical", set(self.classical) <= set(CLASSICAL_FLOW),
                   "a list of " + ", ".join(CLASSICAL_FLOW)),
                  ("pairs", all(isinstance(p, str) and p.strip() for p in self.pairs),
                   "a list of non-empty glob patterns over pair names"))
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"config key 'eval.flow.{key}': must be {want}, got {getattr(self, key)!r}")


@dataclass
class DavisConfig:
    """DAVIS label propagation (vidssl eval davis)"""

    context: int = opt(20, "previous frames used as context besides the first")
    topk: int = opt(10, "top-k affinities kept per target cell, over all context frames")
    temperature: float = opt(0.07, "softmax temperature of the kept affinities (cosine similarities)")
    radius: int = opt(12, "only context cells within this many feature cells of the target cell vote (0: no "
                          "restriction)")
    radius_first_frame: bool = opt(True, "restrict the first frame to the radius too (DINO); false: search it "
                                         "whole (CRW)")
    max_side: int = opt(480, "frames are resized so the long side is at most this before feature extraction "
                             "(0: full size); scores are computed at annotation resolution")
    norm_mask: bool = opt(False, "min-max normalise each label's upsampled soft labels over the frame before the "
                                 "argmax (DINO's and VFS's norm_mask); false: the plain argmax (CRW's default)")
    batch_size: int = opt(4, "frames per backbone forward pass")
    sequences: list[str] = opt([], "sequences to evaluate; empty: those of the `subset` ImageSets file")
    subset: str = opt("val", "ImageSets/<subset>.txt to evaluate (searched in ImageSets/2017, 480p, 2016, then "
                             "ImageSets/; a full DAVIS download holds train and val); without one, every "
                             "ImageSets/*.txt, else every JPEGImages folder. Also picks DAVIS instance retrieval's "
                             "sequences")
    overlay_frames: int = opt(4, "frames shown per sequence in each model's overlay PNG")
    save_masks: bool = opt(False, "also write the predicted masks as DAVIS palette PNGs (for the official scorer)")
    device: str = opt("auto", "where features and propagation are computed: auto (cuda if available) | cpu | cuda[:N]")

    def validate(self) -> None:
        checks = (("context", self.context >= 0, ">= 0"), ("topk", self.topk >= 1, ">= 1"),
                  ("temperature", self.temperature > 0, "> 0"), ("radius", self.radius >= 0, ">= 0"),
                  ("max_side", self.max_side == 0 or self.max_side >= 32, "0 or >= 32"),
                  ("batch_size", self.batch_size >= 1, ">= 1"), ("overlay_frames", self.overlay_frames >= 1, ">= 1"),
                  ("device", is_device_name(self.device),
                   "auto, cpu, cuda or cuda:N"))
        for key, ok, want in checks:
            if not ok:
                raise ConfigError(f"config key 'eval.davis.{key}': must be {want}, got {getattr(self, key)!r}")
        for name in self.sequences:
            if not is_sequence_name(name):
                bare = name.rstrip("/\\")  # `blackswan/`, as a shell completes a folder: an ImageSets line may be
                fix = (f"write {bare!r}, without the slash" if is_sequence_name(bare) else
                       "list folder names alone, e.g. [blackswan, bear]")
                raise ConfigError(f"config key 'eval.davis.sequences': {name!r} is not a sequence name (a folder "
                                  f"name under JPEGImages/480p); {fix}")


@dataclass
class EvalConfig:
    """transfer evaluations"""

    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    davis: DavisConfig = field(default_factory=DavisConfig)
