import enum


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def rotate(*args, **kwargs):
    raise NotImplementedError(
        "torchvision is not installed in the HVS ComfyUI test server (import stand-in): "
        "the LaMa upscale model is unavailable")
