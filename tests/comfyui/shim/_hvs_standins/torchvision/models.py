def efficientnet_v2_s(*args, **kwargs):
    raise NotImplementedError(
        "torchvision is not installed in the HVS ComfyUI test server (import stand-in): "
        "Stable Cascade's EfficientNet encoder / ControlNet are unavailable")
