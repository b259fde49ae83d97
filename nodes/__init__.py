"""ComfyUI node adapters, one module per stage. Each node reads its inputs, builds one typed
options object, calls one engine function and converts the result (see nodes/adapters.py)."""
from . import audio, avatar, image_to_video, loaders, performance, sampling, text, training, vae, video

_ALL = {**loaders.NODES, **text.NODES, **sampling.NODES, **vae.NODES, **video.NODES, **image_to_video.NODES,
        **performance.NODES, **training.NODES, **audio.NODES,
        **avatar.NODES}

NODE_CLASS_MAPPINGS = {node_id: cls for node_id, (cls, _) in _ALL.items()}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: name for node_id, (_, name) in _ALL.items()}
