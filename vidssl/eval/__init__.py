"""Transfer evaluation: retrieval, optical flow and DAVIS label propagation. Each produces raw predictions, then a
deterministic scorer turns them into metrics."""
