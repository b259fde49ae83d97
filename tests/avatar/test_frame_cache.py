"""The avatar frame cache (the release's DeepCache) on the tiny-avatar model: computing steps are the uncached
model bit for bit; cached steps run only the last single block, on the recorded input assembled per latent frame
(windows that moved), and match the official model's ``is_cache`` forward (golden_frame_cache.safetensors, made by
make_frame_cache_fixture.py from the official code at the commit named in it); the cache leaves the model on close
or error; the generic step caches still refuse."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from hyvideo_core.apps.avatar import load_avatar_transformer
from hyvideo_core.apps.avatar.frame_cache import FrameCache, frame_cache_rule
from hyvideo_core.apps.avatar.schedule import frame_cache_computes
from hyvideo_core.errors import InputError
from hyvideo_core.model import HunyuanVideoTransformer
from hyvideo_core.runtime.caching import apply_teacache
from hyvideo_core.variants import VARIANTS
from tests.reference_models import save

FIXTURE = Path(__file__).resolve().parent / "golden_avatar.safetensors"
T, H, W = 5, 8, 12                  # latent frames per window, latent height, width (tokens 4 x 6 per frame)
BUFFER = 8                          # latent frames in the sampler's circular buffer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    with safe_open(str(FIXTURE), "pt") as f:
        state = {k[len("state."):]: f.get_tensor(k) for k in f.keys() if k.startswith("state.")}
    return load_avatar_transformer(save(state, str(tmp_path_factory.mktemp("avatar") / "avatar.safetensors")))


@pytest.fixture(scope="module")
def run():
    """Fixed conditioning, a buffer of latents; run(model, window, t, text=...) -> velocity of that window."""
    g = torch.Generator().manual_seed(7)
    buffer = torch.randn(1, 4, BUFFER, H, W, generator=g)
    ref = torch.randn(1, 4, 1, H, W, generator=g).expand(1, 4, T, H, W)
    audio = torch.randn(1, 4 * BUFFER, 10, 5, 8, generator=g)
    texts = {"pos": (torch.randn(1, 12, 32, generator=g), torch.ones(1, 12, dtype=torch.long)),
             "neg": (torch.randn(1, 12, 32, generator=g), torch.tensor([[1] * 7 + [0] * 5]))}
    pooled = torch.randn(1, 16, generator=g)

    def call(model, window, t, text="pos", latents=None):
        idx = list(window)
        audio_idx = [(4 * idx[0] + k) % audio.shape[1] for k in range(4 * T - 3)]
        states, mask = texts[text]
        x = buffer[:, :, idx] if latents is None else latents
        with torch.no_grad():
            return model(x, torch.tensor([float(t)]), states, mask, pooled,
                         extras=dict(ref_latents=ref, audio_windows=audio[:, audio_idx], face_mask=torch.ones(1, H, W)))
    return call


def last_block_inputs(model):
    """Record the last single block's input on every forward (a plain hook, no cache)."""
    seen = []
    handle = model.single_blocks[-1].register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    return seen, handle


def with_last_block_input(model, replacement):
    """Substitute the last single block's input (the uncached model computing everything else)."""
    return model.single_blocks[-1].register_forward_pre_hook(lambda m, a: (replacement,) + tuple(a[1:]))


def block_calls(model):
    counts = {}
    handles = []
    for name in ("double_blocks", "single_blocks"):
        for i, block in enumerate(getattr(model, name)):
            counts[(name, i)] = 0
            handles.append(block.register_forward_pre_hook(
                lambda m, a, key=(name, i): counts.__setitem__(key, counts[key] + 1)))
    return counts, handles


def test_released_rule_and_its_scaling():
    released = set(range(15)) | set(range(15, 42, 5)) | set(range(41, 50))     # the pipeline's no_cache_steps
    assert [frame_cache_computes(s) for s in range(50)] == [s in released for s in range(50)]
    assert frame_cache_rule(50) is frame_cache_computes
    scaled = {n: [s for s in range(n) if frame_cache_rule(n)(s)] for n in (14, 20, 25, 30, 100)}
    assert scaled[14] == list(range(14))                                         # short runs: nothing cached
    assert scaled[20] == [0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 13, 15, 16, 17, 18, 19]
    assert scaled[25] == [0, 1, 2, 3, 4, 5, 6, 7, 10, 13, 16, 19, 20, 21, 22, 23, 24]
    assert scaled[30] == list(range(11)) + [12, 15, 18, 21, 24, 25, 26, 27, 28, 29]
    assert scaled[100] == list(range(32)) + [41, 51, 61, 71, 81] + list(range(82, 100))
    with pytest.raises(InputError, match="steps must be at least 1"):
        frame_cache_rule(0)


def test_the_cache_follows_the_rule_for_its_step_count(model, run):
    window = (0, 1, 2, 3, 4)
    for steps, rule in ((None, frame_cache_computes), (20, frame_cache_rule(20))):
        with FrameCache(model, steps=steps) as cache:
            for step in range(20):
                with cache.at(step, window, "cond"):
                    run(model, window, 1000.0 - 40 * step)
            assert cache.stats.decisions == [rule(s) for s in range(20)]
    with pytest.raises(InputError, match="either computes .* or steps"):
        FrameCache(model, computes=frame_cache_computes, steps=30)
    assert model.block_passes == []


def test_computing_steps_are_the_uncached_model_bit_for_bit(model, run):
    window = (3, 4, 5, 6, 7)
    plain = [run(model, window, t) for t in (1000.0, 950.0)]
    with FrameCache(model, computes=lambda step: True) as cache:
        for step, t in enumerate((1000.0, 950.0)):
            with cache.at(step, window, "cond"):
                assert torch.equal(run(model, window, t), plain[step])
        assert cache.stats.full == 2 and cache.stats.cached == 0
    assert model.block_passes == []


def test_cached_step_runs_only_the_last_single_block_on_the_recorded_input(model, run):
    window = (0, 1, 2, 3, 4)
    seen, handle = last_block_inputs(model)
    run(model, window, 1000.0)
    handle.remove()
    replace = with_last_block_input(model, seen[0])
    expected = run(model, window, 900.0)                   # everything fresh at t=900 except that input
    replace.remove()
    with FrameCache(model, computes=lambda step: step == 0) as cache:
        with cache.at(0, window, "cond"):
            run(model, window, 1000.0)
        counts, handles = block_calls(model)
        with cache.at(1, window, "cond"):
            got = run(model, window, 900.0)
        for h in handles:
            h.remove()
    last = ("single_blocks", len(model.single_blocks) - 1)
    assert counts == {key: int(key == last) for key in counts}
    assert torch.equal(got, expected)
    assert cache.stats.decisions == [True, False]
    assert not torch.equal(got, run(model, window, 900.0))  # the cache did change the result


def test_shifted_windows_reuse_each_latent_frame_from_its_own_record(model, run):
    a, b, c = (0, 1, 2, 3, 4), (5, 6, 7, 0, 1), (2, 3, 4, 5, 6)     # c moved: frames 2-4 from a, 5-6 from b
    seen, handle = last_block_inputs(model)
    run(model, a, 1000.0)
    run(model, b, 1000.0)
    handle.remove()
    (rec_a, rec_b), prefix, hw = seen, H * W // 4, H * W // 4
    video = lambda rec, k: rec[:, prefix + k * hw:prefix + (k + 1) * hw]
    n_img = prefix + T * hw
    assembled = torch.cat([rec_a[:, :prefix], video(rec_a, 2), video(rec_a, 3), video(rec_a, 4),
                           video(rec_b, 0), video(rec_b, 1), rec_a[:, n_img:]], dim=1)
    replace = with_last_block_input(model, assembled)
    expected = run(model, c, 800.0)
    replace.remove()
    with FrameCache(model, computes=lambda step: step == 0) as cache:
        with cache.at(0, a, "cond"):
            run(model, a, 1000.0)
        with cache.at(0, b, "cond"):
            run(model, b, 1000.0)
        with cache.at(1, c, "cond"):
            got = run(model, c, 800.0)
    assert torch.equal(got, expected)


def test_branches_have_their_own_records_and_text_of_another_length(model, run):
    window = (0, 1, 2, 3, 4)
    seen, handle = last_block_inputs(model)
    run(model, window, 1000.0, text="neg")                  # 7 real text tokens: its own key mask
    handle.remove()
    replace = with_last_block_input(model, seen[0])
    expected = run(model, window, 900.0, text="neg")
    replace.remove()
    with FrameCache(model, computes=lambda step: step == 0) as cache:
        with cache.at(0, window, "uncond"):
            run(model, window, 1000.0, text="neg")
        with cache.at(0, window, "cond"):
            run(model, window, 1000.0)
        with cache.at(1, window, "uncond"):
            got = run(model, window, 900.0, text="pos")     # the cached text (and its mask) is what runs
        with cache.at(1, (1, 2, 3, 4, 5), "cond"):
            run(model, (1, 2, 3, 4, 5), 900.0)              # frame 5 never recorded: this call computes
        assert cache.stats.decisions == [True, True, False, True]
    assert torch.equal(got, expected)


def test_a_new_run_starts_afresh(model, run):
    window = (0, 1, 2, 3, 4)
    with FrameCache(model, computes=lambda step: step == 0) as cache:
        with cache.at(0, window, "cond"):
            run(model, window, 1000.0)
        with cache.at(1, window, "cond"):
            run(model, window, 900.0)
        with cache.at(0, window, "cond"):                   # step 0 again: a new run, the records are reset
            first = run(model, window, 1000.0, latents=torch.zeros(1, 4, T, H, W))
        assert cache.stats.decisions == [True]
    assert torch.equal(first, run(model, window, 1000.0, latents=torch.zeros(1, 4, T, H, W)))


def test_the_cache_leaves_the_model_on_close_and_on_error(model, run):
    window = (0, 1, 2, 3, 4)
    cache = FrameCache(model)
    assert model.block_passes == [cache]
    hooks = len(model.single_blocks[-1]._forward_pre_hooks)
    cache.close()
    assert model.block_passes == [] and len(model.single_blocks[-1]._forward_pre_hooks) == hooks - 1
    cache = FrameCache(model)
    with pytest.raises(InputError, match="audio_windows"):
        with cache.at(0, window, "cond"):
            with torch.no_grad():
                model(torch.zeros(1, 4, T, H, W), torch.tensor([1000.0]), torch.zeros(1, 12, 32), None,
                      torch.zeros(1, 16), extras=dict(ref_latents=torch.zeros(1, 4, T, H, W)))
    assert model.block_passes == [] and not cache.installed
    with pytest.raises(InputError, match="was closed"):
        with cache.at(1, window, "cond"):
            pass
    cache = FrameCache(model)
    with pytest.raises(KeyboardInterrupt):
        with cache.at(0, window, "cond"):
            raise KeyboardInterrupt
    assert model.block_passes == []


def test_window_of_the_wrong_length_is_a_clear_error(model, run):
    with FrameCache(model) as cache:
        with pytest.raises(InputError, match=r"the window has 5 latent frames but 3 latent indices"):
            with cache.at(0, (0, 1, 2), "cond"):
                run(model, (0, 1, 2, 3, 4), 1000.0)
    with FrameCache(model) as cache:
        with pytest.raises(InputError, match=r"expected a step >= 0"):
            with cache.at(-1, (0, 1, 2, 3, 4), "cond"):
                pass


def test_generic_step_caches_still_refuse_the_avatar_and_the_frame_cache_refuses_t2v(model, run):
    with FrameCache(model):
        tea = apply_teacache(model, 0.5)
        try:
            with pytest.raises(InputError, match=r"TeaCache cannot skip blocks while the extensions \['avatar'\]"):
                run(model, (0, 1, 2, 3, 4), 1000.0)
        finally:
            tea.remove()
    t2v = HunyuanVideoTransformer(VARIANTS["tiny"].transformer)
    with pytest.raises(InputError, match=r"no avatar extension\. For text- or image-to-video use .*teacache"):
        FrameCache(t2v)


def test_cached_call_matches_the_official_is_cache_forward(model):
    """golden_frame_cache.safetensors (make_frame_cache_fixture.py): the official model ran the cfg_pair inputs of
    golden_avatar.safetensors in full, then other latents at other timesteps with is_cache=True."""
    with safe_open(str(FIXTURE), "pt") as f:
        first = {k.rsplit(".", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith("cfg_pair.input.")}
    with safe_open(str(FIXTURE.with_name("golden_frame_cache.safetensors")), "pt") as f:
        second = {k.rsplit(".", 1)[1]: f.get_tensor(k) for k in f.keys() if k.startswith("cached.input.")}
        official = f.get_tensor("cached.output")
        assert f.metadata()["official_commit"] == "fd59436af88e747c7e48055fd65df8233c4ff2eb"

    def call(i):
        with torch.no_grad():
            return model(i["x"], i["t"], i["text_states"], i["text_mask"], i["text_states_2"],
                         extras=dict(ref_latents=i["ref_latents"], audio_windows=i["audio_prompts"],
                                     face_mask=i["face_mask"], motion_exp=i["motion_exp"],
                                     motion_pose=i["motion_pose"], fps=i["fps"]))
    with FrameCache(model) as cache:                        # steps 0 and 16 of the released rule
        with cache.at(0, (0, 1, 2), "cfg"):
            call(first)
        with cache.at(16, (0, 1, 2), "cfg"):
            got = call(second)
        assert cache.stats.decisions == [True, False]
    assert (got - official).abs().max() < 1e-4
    assert (call(second) - official).abs().max() > 1e-2    # uncached, the second call would differ


@pytest.mark.skipif(not os.environ.get("HUNYUAN_AVATAR_SOURCE"),
                    reason="set HUNYUAN_AVATAR_SOURCE to an exported HunyuanVideo-Avatar tree to re-make the fixture")
def test_frame_cache_fixture_is_reproduced_by_the_official_code(tmp_path):
    out = tmp_path / "golden_frame_cache.safetensors"
    subprocess.run([sys.executable, str(FIXTURE.parent / "make_frame_cache_fixture.py"), "--source",
                    os.environ["HUNYUAN_AVATAR_SOURCE"], "--commit", "fd59436af88e747c7e48055fd65df8233c4ff2eb",
                    "--out", str(out)], check=True, cwd=FIXTURE.parents[2], timeout=600)
    with safe_open(str(out), "pt") as remade, \
            safe_open(str(FIXTURE.with_name("golden_frame_cache.safetensors")), "pt") as committed:
        assert sorted(remade.keys()) == sorted(committed.keys())
        for key in committed.keys():
            torch.testing.assert_close(remade.get_tensor(key), committed.get_tensor(key), rtol=0, atol=1e-5, msg=key)
