"""VAE encode and decode with tiling."""
from __future__ import annotations

from .adapters import CATEGORY, PREFIX, images_to_video, latent, progress_callback, tooltip, video_to_images


def _tiles(vae, tile_size: int, tile_frames: int, overlap: float):
    """0 means automatic (the official tiling rules); a size sets that tile."""
    from ..hyvideo_core.vae import TileSettings

    if tile_size == 0 and tile_frames == 0:
        return None
    official = TileSettings.official(vae.config)
    return TileSettings.with_overlap(vae.config, tile_size or official.spatial_size,
                                     tile_frames or official.temporal_size, overlap)


_TILE_INPUTS = {
    "tile_size": ("INT", tooltip("Spatial tile edge in pixels; 0 = automatic (256). Smaller tiles use less memory.",
                                 default=0, min=0, max=4096, step=32)),
    "tile_frames": ("INT", tooltip("Frames per temporal tile; 0 = automatic (64). Memory grows with this, not "
                                   "with the video length.", default=0, min=0, max=1024, step=4)),
    "overlap": ("FLOAT", tooltip("Fraction of a tile blended with its neighbour.", default=0.25, min=0.0, max=0.5,
                                 step=0.05)),
}


class VAEDecode:
    DESCRIPTION = ("Decodes latents to frames with the causal video VAE, tiled in space and time to bound memory. "
                   "Talking-avatar latents are cut to the sound's length.")
    CATEGORY = f"{CATEGORY}/vae"
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_TOOLTIPS = ("All frames of all videos, (frames, height, width, 3).",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (f"{PREFIX}_VAE", tooltip("From Load HunyuanVideo VAE.")),
                             "samples": ("LATENT", tooltip("Latents from the sampler or any HunyuanVideo latent.")),
                             **_TILE_INPUTS}}

    def decode(self, vae, samples, tile_size, tile_frames, overlap):
        from ..hyvideo_core.apps.i2v import LATENT_KEY, decode_i2v
        from .avatar import LATENT_KEY as AVATAR_KEY

        # latent_concat image-to-video latents decode to 4 leading frames that are not part of the video
        condition = samples.get(LATENT_KEY)
        video = decode_i2v(vae, samples["samples"], condition.mode if condition is not None else None,
                           tile=_tiles(vae, tile_size, tile_frames, overlap), callback=progress_callback(previews=False))
        avatar = samples.get(AVATAR_KEY)
        if avatar is not None:       # talking avatar: the video ends with the sound
            video = video[:, :, :avatar.video_frames]
        return (video_to_images(video),)


class VAEEncode:
    DESCRIPTION = "Encodes frames (a 4n+1 frame video, sides multiples of 16) to latents, e.g. for video-to-video."
    CATEGORY = f"{CATEGORY}/vae"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("Raw latents (B, C, (F-1)/4+1, H/8, W/8).",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": (f"{PREFIX}_VAE", tooltip("From Load HunyuanVideo VAE.")),
                             "images": ("IMAGE", tooltip("The frames of one video.")), **_TILE_INPUTS}}

    def encode(self, vae, images, tile_size, tile_frames, overlap):
        z = vae.encode(images_to_video(images), tile=_tiles(vae, tile_size, tile_frames, overlap),
                       callback=progress_callback(previews=False))
        return (latent(z),)


NODES = {f"{PREFIX}_VAEDecode": (VAEDecode, "HunyuanVideo VAE Decode (HVS)"),
         f"{PREFIX}_VAEEncode": (VAEEncode, "HunyuanVideo VAE Encode (HVS)")}
