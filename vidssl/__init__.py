"""vidssl: self-supervised visual representations from unlabeled video."""

__version__ = "0.1.0"


def load_backbone(path, *args, **kwargs):
    """Load an exported backbone for feature extraction (see :func:`vidssl.export.load_backbone`)."""
    from vidssl.export import load_backbone as _load

    return _load(path, *args, **kwargs)
