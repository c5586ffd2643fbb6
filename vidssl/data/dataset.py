"""A map-style dataset over the pair shards and the loader that batches it for training."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidssl.data.augment import augment_pair
from vidssl.data.pairs import REWRITE_ADVICE, PairSet
from vidssl.data.sampler import PairBatchSampler
from vidssl.data.shards import ShardRows
from vidssl.errors import VidsslError
from vidssl.lifeline import loader_workers
from vidssl.train_config import DataConfig

log = logging.getLogger(__name__)


class PairPatches(Dataset):
    """Item ``(pair_index, seed_tuple)`` -> ``([M, S, S, 3] uint8 augmented patches, pair_index)``: M = 2 (first,
    last), or 3 with ``background`` (first, last, the same-frame background; the dataset must hold it).

    Each patch is read from its shard by one positioned read (:class:`vidssl.data.shards.ShardRows`): no file stays
    open, and only the bytes of the pairs read are loaded.
    """

    def __init__(self, pairs: PairSet, cfg: DataConfig, background: bool = False) -> None:
        if background and not pairs.has_background:
            some = pairs.narrow_shards
            which = (f"{len(some)} of the {len(pairs.shards)} shards (e.g. {some[0]}) have no background patches, "
                     f"mined without them and merged with ones mined with them" if some
                     else "the pairs have no background patches")
            raise VidsslError(f"{pairs.root}: {which}, which "
                              f"miner.background_negatives needs; mine them with --set mine.background_patches=true "
                              f"(a new pairs folder), or train without them: --set miner.background_negatives=false "
                              f"--set loss.cycle_background=false (the cycle loss walks into them too)")
        if cfg.box_view > 0 and pairs.patch_boxes is None:
            # a patch that is its tracked box (mined with mine.patch_context 1, or written without boxes) is what a
            # box view of it would crop: the option changes nothing there, and draws nothing
            log.info("%s: the patches are their tracked boxes (no patch_boxes recorded): data.box_view=%s crops "
                     "nothing else", pairs.root, cfg.box_view)
        self.pairs, self.cfg = pairs, cfg
        self.width = 3 if background else 2
        self._rows = ShardRows(REWRITE_ADVICE if pairs.written else None)

    def __len__(self) -> int:
        return len(self.pairs)

    def raw(self, index: int) -> np.ndarray:
        """[M, S0, S0, 3] uint8, the stored patches of pair ``index`` (M as the item)."""
        shard = self.pairs.root / self.pairs.shards[int(self.pairs.shard_index[index])]
        return self._rows.read(shard, int(self.pairs.offset[index]), count=self.width)

    def __getitem__(self, item: tuple[int, tuple[int, ...]]) -> tuple[np.ndarray, int]:
        index, seed = item
        rng = np.random.default_rng(list(seed))
        c = self.cfg
        boxes = self.pairs.patch_boxes
        boxes = boxes[index] if c.box_view > 0 and boxes is not None else None
        return augment_pair(self.raw(index), rng, c.patch_size, c.crop_min, c.flip, boxes, c.box_view), index


def make_loader(dataset: PairPatches, sampler: PairBatchSampler, cfg: DataConfig, pin_memory: bool,
                seed: int = 0) -> DataLoader:
    """Batches of ``(uint8 [P, M, S, S, 3], int64 [P] pair indices)`` in the sampler's order."""
    workers = cfg.num_workers
    # its own generator: starting an iterator must not draw from the global torch RNG, which a resumed run restores
    return DataLoader(dataset, batch_sampler=sampler, pin_memory=pin_memory, **loader_workers(workers, "make_loader"),
                      generator=torch.Generator().manual_seed(seed),
                      prefetch_factor=cfg.prefetch if workers else None, persistent_workers=False)


def to_input(patches: torch.Tensor, mean, std, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 [P, M, S, S, 3] -> float [M P, 3, S, S] normalised: anchors (first patches), then positives, then (M
    = 3) the backgrounds.

    The result is channels_last in memory (a free permute of the HWC patches); ``channels_last=False`` copies it
    to the contiguous layout. One uint8 copy, one conversion and two in-place passes: several times faster than
    cat + permute + out-of-place arithmetic on 2 shared cores.
    """
    s = patches.shape[2]
    x = patches.to(device, non_blocking=True).transpose(0, 1).reshape(-1, s, s, 3).permute(0, 3, 1, 2).float()
    # (mean and std may be given as tensors already on the device: no copy from host memory each step, which
    # would make the host wait for the GPU right after the non-blocking copy above)
    x.sub_(torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0)
    x.div_(torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255.0)
    return x if channels_last else x.contiguous()
