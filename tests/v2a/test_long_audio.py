"""Audio beyond the released 15 s: jointly denoised overlapping windows on the tiny Foley model with
random weights and a tiny DAC whose hop makes 50 latent frames per second (like the released 48 kHz /
hop 960 one), so durations in seconds mean the same as at full size."""
import math

import pytest
import torch

from hyvideo_core.v2a.audio_vae.model import DacConfig, DacVae
from hyvideo_core.v2a.config import get_foley_variant
from hyvideo_core.v2a.join_quality import measure_joins
from hyvideo_core.v2a.long_audio import (
    AudioWindow, blend_weights, decode_audio, latent_frames_for, long_audio_noise, plan_audio_windows,
    sample_long_audio_latents, window_conditions,
)
from hyvideo_core.v2a.model import HunyuanVideoFoley
from hyvideo_core.v2a.sample import FoleyConditions, sample_audio_latents

WINDOW, OVERLAP = 96, 32          # latent frames: 1.92 s windows overlapping by 0.64 s (test size)
SR = 300                          # tiny DAC: hop 6 -> 50 latent frames per second
CFG = get_foley_variant("foley-tiny").model


@pytest.fixture(autouse=True)
def one_thread():
    """Hundreds of calls on tiny tensors: a second thread only adds synchronisation (and, on a loaded
    machine, waits for a core), so these tests run single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = HunyuanVideoFoley(CFG).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.3)
    return m


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(1)
    return DacVae(DacConfig(encoder_dim=4, encoder_rates=(2, 3), latent_dim=CFG.audio_latent_dim, decoder_dim=16,
                            decoder_rates=(3, 2), sample_rate=SR)).eval()


def video_features(seconds: float, seed: int = 2):
    """Features as the extractors give them for a clip: SigLIP2 at 8 fps, Synchformer segments of
    16 frames at 25 fps with stride 8, CLAP states for the prompt and the negative."""
    g = torch.Generator().manual_seed(seed)
    frames25 = int(seconds * 25)
    segments = (frames25 - 16) // 8 + 1
    visual = torch.randn(1, int(seconds * 8), CFG.visual_dim, generator=g)
    sync = torch.randn(1, 8 * segments, CFG.sync_dim, generator=g)
    text, negative = torch.randn(1, 7, CFG.text_dim, generator=g), torch.randn(1, 5, CFG.text_dim, generator=g)
    return FoleyConditions(visual, sync, text), negative


def test_one_window_is_the_plain_sampler_bit_for_bit(model):
    cond, negative = video_features(1.6)
    noise = long_audio_noise(80, CFG.audio_latent_dim, seed=3)
    with torch.no_grad():
        plain = sample_audio_latents(model, noise, cond, negative, steps=3, cfg_scale=4.5)
        long = sample_long_audio_latents(model, noise, cond, negative, steps=3, cfg_scale=4.5,
                                         window_frames=WINDOW, overlap_frames=OVERLAP)
    assert torch.equal(plain, long)


def test_video_three_windows_long_gets_exactly_its_duration(model, vae):
    seconds = 3 * WINDOW / 50                                  # 5.76 s
    cond, negative = video_features(seconds)
    frames = latent_frames_for(seconds, SR, vae.config.hop_length)
    assert frames == 3 * WINDOW
    with torch.no_grad():
        latents = sample_long_audio_latents(model, long_audio_noise(frames, CFG.audio_latent_dim, seed=4), cond,
                                            negative, steps=3, window_frames=WINDOW, overlap_frames=OVERLAP)
        audio = decode_audio(vae, latents, seconds, chunk_frames=64)
    assert audio.shape == (1, 1, round(seconds * SR))
    assert torch.isfinite(audio).all()
    # no silent stretch anywhere: every 0.1 s has energy
    rms = audio[0, 0].unfold(0, SR // 10, SR // 10).pow(2).mean(1).sqrt()
    assert rms.min() > 0.05 * rms.median()


def _joint_and_independent(model, seconds, seed):
    cond, negative = video_features(seconds, seed)
    frames = int(seconds * 50)
    noise = long_audio_noise(frames, CFG.audio_latent_dim, seed=seed)
    windows = plan_audio_windows(frames, WINDOW, OVERLAP)
    with torch.no_grad():
        joint = sample_long_audio_latents(model, noise, cond, negative, steps=4, window_frames=WINDOW,
                                          overlap_frames=OVERLAP)
        # the naive alternative: each window sampled on its own, cut at the middle of each overlap
        pieces, cut = [], 0
        for k, w in enumerate(windows):
            c = window_conditions(cond, w, frames, CFG.sync_tokens_per_segment)
            z = sample_audio_latents(model, noise[:, :, w.start:w.end], c, negative, steps=4)
            end = frames if k + 1 == len(windows) else (windows[k + 1].start + w.end) // 2
            pieces.append(z[:, :, cut - w.start:end - w.start])
            cut = end
    return joint, torch.cat(pieces, 2), windows


def test_windows_agree_on_their_overlaps_so_the_joins_are_not_audible(model, vae):
    seconds = 3 * WINDOW / 50
    joint, independent, windows = _joint_and_independent(model, seconds, seed=5)
    hop = vae.config.hop_length
    joins = sorted({w.start * hop for w in windows[1:]} | {w.end * hop for w in windows[:-1]})
    with torch.no_grad():
        smooth = measure_joins(decode_audio(vae, joint, seconds), SR, joins, frame_seconds=0.06)
        cuts = [((windows[k + 1].start + w.end) // 2) * hop for k, w in enumerate(windows[:-1])]
        naive = measure_joins(decode_audio(vae, independent, seconds), SR, cuts, frame_seconds=0.06)
    assert smooth.seamless(tolerance=1.5), smooth
    # the same yardstick sees the hard cuts between independently sampled windows
    assert naive.flux_ratio > smooth.flux_ratio and naive.energy_ratio > smooth.energy_ratio, (naive, smooth)


def test_join_measure_flags_a_click_and_a_gap_and_passes_a_steady_tone():
    sr, n = 8000, 8000
    t = torch.arange(n) / sr
    tone = torch.sin(2 * math.pi * 440 * t) * (1 + 0.1 * torch.sin(2 * math.pi * 3 * t))
    assert measure_joins(tone, sr, [4000]).seamless()
    jump = tone.clone()
    jump[4000:] = 0.3 * torch.sin(2 * math.pi * 1300 * t[4000:] + 1.0)
    assert not measure_joins(jump, sr, [4000]).seamless()
    gap = tone.clone()
    gap[3900:4100] = 0
    report = measure_joins(gap, sr, [4000])
    assert report.quietest_db < -30 and not report.seamless()


def test_noise_of_a_prefix_does_not_depend_on_the_total_length():
    assert torch.equal(long_audio_noise(500, 8, seed=7)[:, :, :120], long_audio_noise(120, 8, seed=7))


@pytest.mark.parametrize("total", [97, 161, 200, 288, 1000, 36001])
def test_window_plan_covers_everything_with_positive_smooth_weights(total):
    windows = plan_audio_windows(total, WINDOW, OVERLAP)
    assert windows[0].start == 0 and windows[-1].end == total
    assert all(w.start % 16 == 0 for w in windows)
    assert all(OVERLAP <= w.end - w.start <= WINDOW + 16 for w in windows)
    cover = torch.zeros(total)
    for w, weight in zip(windows, blend_weights(windows)):
        assert weight.min() > 0
        cover[w.start:w.end] += weight
    assert cover.min() > 0.5
    if total in (288, 1000):      # evenly spaced on the grid: only neighbours meet and the ramps sum to 1
        assert torch.allclose(cover, torch.ones(total), atol=1e-6)


def test_windows_get_their_own_stretch_of_the_features():
    cond, _ = video_features(5.76)
    total = 288
    whole = window_conditions(cond, AudioWindow(0, total), total, 8)
    assert whole is cond
    part = window_conditions(cond, AudioWindow(96, 192), total, 8)
    # one third of the clip: a third of the 8 fps frames and of the Synchformer segments
    assert part.visual_features.shape[1] == round(192 * 46 / 288) - round(96 * 46 / 288)
    assert part.sync_features.shape[1] % 8 == 0
    assert torch.equal(part.sync_features, cond.sync_features[:, 8 * round(96 * 17 / 288):8 * round(192 * 17 / 288)])


def test_twelve_minutes_keep_the_model_and_the_decoder_at_window_size(model, vae):
    """> 10 min: the DiT only ever sees one window and the DAC one chunk plus its context; what
    scales with the duration is the latents and the features (here 12 min)."""
    seconds = 12 * 60
    cond, negative = video_features(seconds)
    frames = latent_frames_for(seconds, SR, vae.config.hop_length)
    seen = {"model": 0, "decoder": 0}

    def record(key):
        def hook(_module, args):
            seen[key] = max(seen[key], args[0].shape[-1])
        return hook

    handles = [model.register_forward_pre_hook(record("model")), vae.decoder.register_forward_pre_hook(record("decoder"))]
    try:
        with torch.no_grad():
            latents = sample_long_audio_latents(model, long_audio_noise(frames, CFG.audio_latent_dim, seed=8), cond,
                                                negative, steps=1, cfg_scale=1.0, window_frames=480,
                                                overlap_frames=96)
            audio = decode_audio(vae, latents, seconds, chunk_frames=500)
    finally:
        for h in handles:
            h.remove()
    assert audio.shape[-1] == seconds * SR
    assert 0 < seen["model"] <= 480 + 16
    assert 0 < seen["decoder"] <= 500 + 2 * vae.config.decoder_context_frames()


def test_every_clip_length_gets_a_valid_plan():
    for window, overlap in ((96, 32), (96, 64), (750, 150)):
        for total in range(1, 3000):
            windows = plan_audio_windows(total, window, overlap)       # asserts neighbours overlap in order
            assert windows[0].start == 0 and windows[-1].end == total
            assert max(w.end - w.start for w in windows) <= window + 16
