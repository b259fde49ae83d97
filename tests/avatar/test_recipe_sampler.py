"""Our avatar sampler (sample_avatar_latents) against the official pipeline loop, call by call.

The golden fixture recorded HunyuanVideoAudioPipeline.__call__ driving a recording transformer whose velocity is
make_golden_fixture.stand_in_velocity. Here the same closed-form velocity is the forward of a small module carrying
a real AvatarExtension, and OUR sampler drives it: the noise buffer, every call's windows, timestep, guidance and
mask strength, and the final latents must be the official loop's."""
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from hyvideo_core.apps.avatar import AvatarConditioning, AvatarExtension, AvatarOptions, sample_avatar_latents
from hyvideo_core.errors import Interrupted
from hyvideo_core.model.extension import install_extension
from hyvideo_core.sampling.conditions import TextCondition
from hyvideo_core.variants import VARIANTS

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_golden_fixture import stand_in_velocity  # noqa: E402

FRAMES = {"long": 305, "short": 129}
FIXTURE_SEED = 3            # record_pipeline(..., seed=3): torch.randn of the buffer from a generator seeded 3


class StandInAvatar(nn.Module):
    """The recording transformer's velocity behind the model interface the sampler uses, with the avatar
    extension installed (so the sampler accepts it); every call's inputs are kept for the checks."""

    def __init__(self, channels: int):
        super().__init__()
        spec = VARIANTS["tiny-avatar"]
        self.config = replace(spec.transformer, in_channels=channels, out_channels=channels)
        # the fixture's audio is one number per frame: windows of 1 frame x 1 layer x width 1
        avatar = replace(spec.app.config, whisper_dim=1, whisper_layers=1, audio_window=1)
        install_extension(self, AvatarExtension(self.config, avatar))
        self.compute_dtype = torch.float32
        self.calls = []

    def forward(self, x, t, text_states, text_mask, text_states_2, guidance=None, extras=None):
        self.calls.append(dict(x=x.clone(), t=t.clone(), text=text_states, **extras))
        return stand_in_velocity(x, text_states, extras["audio_windows"], extras["face_mask"])


@pytest.fixture(scope="module")
def recorded():
    with safe_open(str(HERE / "golden_avatar.safetensors"), "pt") as f:
        return {case: {k[len(f"schedule.{case}."):]: f.get_tensor(k) for k in f.keys()
                       if k.startswith(f"schedule.{case}.")} for case in FRAMES}


def conditioning(rec) -> AvatarConditioning:
    channels, (h, w) = rec["initial_latents"].shape[1], rec["initial_latents"].shape[-2:]
    # the fixture's prompt states: +1 for the positive prompt, -1 for the negative; face mask 0.8 everywhere
    positive = TextCondition(torch.ones(1, 6, 8), None, torch.zeros(1, 4))
    negative = TextCondition(-torch.ones(1, 6, 8), None, torch.zeros(1, 4))
    return AvatarConditioning(positive, negative, ref_latents=torch.zeros(1, channels, 33, h, w),
                              audio_windows=rec["audio"].float(), face_mask=torch.full((1, h, w), 0.8),
                              video_frames=rec["audio"].shape[1], fps=25.0, height=8 * h, width=8 * w)


@pytest.mark.parametrize("case", list(FRAMES))
def test_our_sampler_reproduces_the_official_loop(recorded, case):
    rec = recorded[case]
    model = StandInAvatar(rec["initial_latents"].shape[1])
    cond = conditioning(rec)
    events = []
    out = sample_avatar_latents(model, cond, AvatarOptions(seed=FIXTURE_SEED), callback=events.append)

    # two model calls per official call: ours are (cond, uncond) in turn, the release batches [uncond, cond]
    calls = model.calls
    assert len(calls) == 2 * len(rec["step"])
    cond_calls, uncond_calls = calls[0::2], calls[1::2]
    assert torch.equal(cond_calls[0]["x"], rec["initial_latents"][:, :, :33])   # the same seeded noise buffer
    for n, (c, u) in enumerate(zip(cond_calls, uncond_calls)):
        assert torch.equal(c["x"], u["x"])
        assert c["t"].item() == pytest.approx(rec["timestep"][n].item(), abs=1e-3)
        audio_index = rec["audio_index"][n].tolist()
        padded = torch.cat([rec["audio"], torch.zeros(1, 400, 1, 1, 1)], dim=1)
        assert torch.equal(c["audio_windows"], padded[:, audio_index].float())
        assert not u["audio_windows"].any()                                      # zero audio, still passed
        strength = rec["mask_scale"][n].item() * 0.8
        assert c["face_mask"].amax().item() == u["face_mask"].amax().item() == pytest.approx(strength, abs=1e-6)
        assert torch.equal(u["text"], -torch.ones(1, 6, 8) if rec["negative_prompt"][n] else torch.ones(1, 6, 8))
        assert c["ref_latents"] is u["ref_latents"]                               # identical in both branches
        assert (c["motion_exp"], c["motion_pose"], c["fps"]) == (30.0, 25.0, 25.0)
    expected = rec["final_latents"]
    assert out.shape == expected.shape
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-4)
    assert [e.step for e in events] == list(range(1, 51)) and events[-1].total == 50
    assert events[-1].latents.shape == expected.shape


def test_plain_cfg_uses_the_negative_prompt_and_full_mask_every_step(recorded):
    rec = recorded["short"]
    model = StandInAvatar(rec["initial_latents"].shape[1])
    options = AvatarOptions(steps=12, seed=FIXTURE_SEED, cfg_scale=4.0, released_schedule=False)
    sample_avatar_latents(model, conditioning(rec), options)
    uncond = model.calls[1::2]
    assert len(uncond) == 12
    assert all(torch.equal(u["text"], -torch.ones(1, 6, 8)) for u in uncond)
    assert all(u["face_mask"].amax().item() == pytest.approx(0.8) for u in uncond)


def test_motion_and_fps_reach_the_model(recorded):
    rec = recorded["short"]
    model = StandInAvatar(rec["initial_latents"].shape[1])
    sample_avatar_latents(model, conditioning(rec), AvatarOptions(steps=1, motion_exp=10.0, motion_pose=5.0))
    assert {(c["motion_exp"], c["motion_pose"], c["fps"]) for c in model.calls} == {(10.0, 5.0, 25.0)}


def test_interrupt_stops_between_steps(recorded):
    rec = recorded["long"]
    model = StandInAvatar(rec["initial_latents"].shape[1])

    def stop_after_two(event):
        if event.step == 2:
            raise Interrupted("stop")

    with pytest.raises(Interrupted):
        sample_avatar_latents(model, conditioning(rec), AvatarOptions(steps=10), callback=stop_after_two)
    assert len(model.calls) == 2 * 2 * 3          # two steps of three windows, two branches each
