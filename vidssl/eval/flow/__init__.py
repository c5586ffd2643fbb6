"""Optical-flow transfer benchmark: classical references, zero-shot correlation of backbone features and a
FlowNetC-style decoder trained on synthetic pairs, scored against real ground truth (``evaluate_flow``)."""
from vidssl.eval.flow.run import evaluate_flow

__all__ = ["evaluate_flow"]
