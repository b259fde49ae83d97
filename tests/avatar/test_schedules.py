"""The avatar sampling schedules against the official pipeline loop, call by call (recorded in the golden fixture
by make_golden_fixture.py from HunyuanVideoAudioPipeline.__call__): circular windows for long audio, the CFG
schedule, the frame-cache steps, the timesteps, and — with the fixture's stand-in velocity — the final latents."""
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hyvideo_core.apps.avatar.schedule import (cfg_step, frame_cache_computes, padded_audio_frames, window_plan)
from hyvideo_core.errors import InputError
from hyvideo_core.sampling.schedules import flow_sigmas

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_golden_fixture import stand_in_velocity  # noqa: E402

STEPS, SHIFT, FRAMES = 50, 5.0, {"long": 305, "short": 129}


@pytest.fixture(scope="module")
def recorded():
    with safe_open(str(HERE / "golden_avatar.safetensors"), "pt") as f:
        return {case: {k[len(f"schedule.{case}."):]: f.get_tensor(k) for k in f.keys()
                       if k.startswith(f"schedule.{case}.")} for case in FRAMES}


def our_calls(frames):
    plan = window_plan(frames)
    return [(step, w) for step in range(STEPS) for w in plan.windows(step)]


@pytest.mark.parametrize("case", list(FRAMES))
def test_windows_match_the_official_loop_call_by_call(recorded, case):
    rec = recorded[case]
    calls = our_calls(FRAMES[case])
    assert len(calls) == len(rec["step"])
    assert [s for s, _ in calls] == rec["step"].tolist()
    assert [w.start for _, w in calls] == rec["index_start"].tolist()
    assert [list(w.latents) for _, w in calls] == rec["latent_index"].tolist()
    assert [list(w.audio) for _, w in calls] == rec["audio_index"].tolist()


@pytest.mark.parametrize("case", list(FRAMES))
def test_cfg_schedule_and_timesteps_match_the_official_loop(recorded, case):
    rec = recorded[case]
    sigmas = flow_sigmas(STEPS, SHIFT)
    for n, step in enumerate(rec["step"].tolist()):
        ours = cfg_step(step, STEPS, 7.5)
        assert ours.scale == pytest.approx(rec["scale"][n].item(), abs=1e-12)
        assert ours.negative_prompt == bool(rec["negative_prompt"][n])
        assert ours.mask_scale == pytest.approx(rec["mask_scale"][n].item(), abs=1e-6)
        assert 1000 * sigmas[step].item() == pytest.approx(rec["timestep"][n].item(), abs=1e-3)
        assert frame_cache_computes(step) == bool(rec["full"][n])


def test_buffer_lengths():
    long, short = window_plan(305), window_plan(129)
    assert (long.output_latents, long.buffer_latents, long.buffer_audio) == (77, 97, 388)
    assert (short.output_latents, short.buffer_latents, short.buffer_audio, short.shift_step) == (33, 33, 132, 0)
    assert [padded_audio_frames(n) for n in (1, 129, 130, 400)] == [129, 129, 135, 405]
    assert sum(frame_cache_computes(s) for s in range(50)) == 30
    with pytest.raises(InputError, match="audio_frames must be at least 1"):
        window_plan(0)


@pytest.mark.parametrize("case", list(FRAMES))
def test_windowed_cfg_sampling_reproduces_the_official_latents(recorded, case):
    """Our plan and CFG schedule driving the fixture's stand-in velocity give the official loop's final latents.
    Like the release, each window's stepped latents are rounded to bf16 before they are averaged back."""
    rec = recorded[case]
    plan, sigmas = window_plan(FRAMES[case]), flow_sigmas(STEPS, SHIFT)
    latents = rec["initial_latents"][:, :, :plan.buffer_latents].clone()
    audio = rec["audio"]
    audio = torch.cat([audio, torch.zeros(1, plan.buffer_audio - audio.shape[1], *audio.shape[2:])], 1) \
        if plan.buffer_audio > audio.shape[1] else audio[:, :plan.buffer_audio]
    positive, negative = torch.ones(1, 6, 8), -torch.ones(1, 6, 8)
    mask = torch.full((1, 1, 1, 2, 2), 0.8)
    for step in range(STEPS):
        cfg = cfg_step(step, STEPS)
        total, count = torch.zeros_like(latents), torch.zeros(latents.shape[2])
        for w in plan.windows(step):
            x, idx = latents[:, :, list(w.latents)], torch.tensor(w.latents)
            uncond = stand_in_velocity(x, negative if cfg.negative_prompt else positive,
                                       torch.zeros_like(audio[:, :len(w.audio)]), mask * cfg.mask_scale)
            cond = stand_in_velocity(x, positive, audio[:, list(w.audio)], mask * cfg.mask_scale)
            v = uncond + cfg.scale * (cond - uncond)
            stepped = (x + v * (sigmas[step + 1] - sigmas[step])).to(torch.bfloat16)
            total.index_add_(2, idx, stepped.float())
            count.index_add_(0, idx, torch.ones(len(idx)))
        latents = total / count[None, None, :, None, None]
    final = latents[:, :, :plan.output_latents]
    expected = rec["final_latents"]
    assert final.shape == expected.shape
    torch.testing.assert_close(final, expected, rtol=0, atol=1e-4)
