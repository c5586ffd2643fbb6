"""Streaming mined pairs into training batches: index (pairs), batch plan (sampler), augmentation, loader; and
writing a pair dataset from pairs made elsewhere (write)."""
from vidssl.data.dataset import PairPatches, make_loader, to_input
from vidssl.data.pairs import PairDataError, PairSet, open_pairs, require_pairs_folder
from vidssl.data.sampler import (BATCH_PLAN, PairBatchSampler, batches_per_epoch, epoch_batches, too_few_batches,
                                 too_few_pairs)
from vidssl.data.write import write_pair_dataset

__all__ = ["BATCH_PLAN", "PairBatchSampler", "PairDataError", "PairPatches", "PairSet", "batches_per_epoch",
           "epoch_batches", "make_loader", "open_pairs", "require_pairs_folder", "to_input", "too_few_batches",
           "too_few_pairs", "write_pair_dataset"]
