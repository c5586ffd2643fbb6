"""vidssl: self-supervised visual representations from unlabeled video."""

__version__ = "0.1.0"


def load_backbone(path, arch=None, map_location="cpu", build_kwargs=None):
    """Exported weights (``.pt``, ``.safetensors`` or a run folder) -> the backbone in eval mode, loaded strictly;
    ``arch`` (and ``build_kwargs``, its constructor arguments, e.g. ``{"width": 32}``) only for weights without a
    model card. See
    :func:`vidssl.export.load_backbone`. (Imported on call: ``import vidssl`` stays light.)"""
    from vidssl.export import load_backbone as _load

    return _load(path, arch=arch, map_location=map_location, build_kwargs=build_kwargs)
