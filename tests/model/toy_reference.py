"""The shipped toy model's outputs on a fixed prompt and seed, recorded before a refactor of the
forward and the sampler so that the refactor can be checked to change nothing, bit for bit.

``python tests/model/toy_reference.py`` rewrites ``toy_reference.safetensors`` (only do that for an
intended change of numbers, and say so in the commit). Single-threaded, so the reduction order of
every matmul is fixed."""
from __future__ import annotations

from pathlib import Path

import torch

FIXTURE = Path(__file__).with_name("toy_reference.safetensors")
PROMPT = "a red circle moving left slowly on a dark background"


@torch.no_grad()
def toy_outputs() -> dict:
    from hyvideo_core.runtime.options import StepCacheOptions
    from hyvideo_core.sampling.loop import sample
    from hyvideo_core.sampling.noise import latent_shape, make_noise
    from hyvideo_core.text_encoders import encode_prompt
    from hyvideo_core.toy.model import load_toy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for teacher in (False, True):
            model, _, enc = load_toy(teacher=teacher)
            pos = encode_prompt(enc, PROMPT, template="video", max_length=32)
            neg = encode_prompt(enc, "", template="video", max_length=32)
            noise = make_noise(latent_shape(17, 64, 64, channels=16), 7, device="cpu")
            args = (model, noise, pos.text_states, pos.text_mask, pos.text_states_2)
            name = "teacher" if teacher else "student"
            if teacher:
                out[f"{name}_cfg"] = sample(*args, steps=4, shift=3.0, cfg_scale=4.0,
                                            negative=(neg.text_states, neg.text_mask, neg.text_states_2))
            else:
                out[f"{name}_t2v"] = sample(*args, steps=16, shift=3.0, embedded_guidance=4.0)
                image = make_noise((1, 16, 1, 8, 8), 3, device="cpu")
                out[f"{name}_i2v_token_replace"] = sample(*args, steps=4, shift=7.0, embedded_guidance=4.0,
                                                          image_latents=image)
                out[f"{name}_teacache"] = sample(*args, steps=8, shift=3.0, embedded_guidance=4.0,
                                                 step_cache=StepCacheOptions("teacache", 0.3))
                out[f"{name}_fbcache"] = sample(*args, steps=8, shift=3.0, embedded_guidance=4.0,
                                                step_cache=StepCacheOptions("first_block_cache", 0.2))
        return {k: v.contiguous() for k, v in out.items()}
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    from safetensors.torch import save_file

    save_file(toy_outputs(), str(FIXTURE))
    print("wrote", FIXTURE)
