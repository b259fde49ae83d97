"""How audible are the joins of windowed generation? Short-time energy and spectral flux at the
join points compared with the rest of the waveform.

A click or a cut shows up as a jump of the short-time energy between neighbouring frames and as
a burst of spectral flux (new energy appearing across the spectrum); a silent gap shows up as a
frame far quieter than the clip's median. The measure is a plain function of a waveform and the
join positions, so the long-audio tests and the toy-world yardstick read the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import InputError


@dataclass(frozen=True)
class JoinReport:
    join_energy_jump_db: float      # largest |Δ energy| between neighbouring frames at a join
    inside_energy_jump_db: float    # the 95th percentile of the same away from the joins
    join_flux: float                # largest normalised spectral flux at a join
    inside_flux: float              # the 95th percentile away from the joins
    quietest_db: float              # quietest frame relative to the clip's median energy (a gap: very negative)

    @property
    def energy_ratio(self) -> float:
        return self.join_energy_jump_db / max(self.inside_energy_jump_db, 1e-6)

    @property
    def flux_ratio(self) -> float:
        return self.join_flux / max(self.inside_flux, 1e-12)

    def seamless(self, tolerance: float = 1.5, max_gap_db: float = -30.0) -> bool:
        """Joins no rougher than ``tolerance`` × what the clip does elsewhere, and no near-silent frame."""
        return self.energy_ratio <= tolerance and self.flux_ratio <= tolerance and self.quietest_db > max_gap_db


def measure_joins(waveform: torch.Tensor, sample_rate: int, join_samples: Sequence[int], *,
                  frame_seconds: float = 0.02, guard_frames: int = 3) -> JoinReport:
    """``waveform``: (N,), (C, N) or (B, C, N) (channels averaged, first batch item); joins in
    samples. Frames of ``frame_seconds`` with a hop of half a frame; a frame is "at a join" if it
    touches one, "inside" if it is more than ``guard_frames`` hops away from every join."""
    x = waveform.detach().float()
    while x.dim() > 1:
        x = x[0] if x.dim() == 3 else x.mean(0)
    size = max(4, int(round(frame_seconds * sample_rate)))
    hop = size // 2
    if x.numel() < 8 * size:
        raise InputError(f"the waveform is too short to measure joins: {x.numel()} samples, need at least {8 * size} "
                         f"({8 * frame_seconds:g} s at {sample_rate} Hz)")
    joins = [int(j) for j in join_samples]
    if not joins or any(not (0 < j < x.numel()) for j in joins):
        raise InputError(f"join positions must be inside the waveform (0 < j < {x.numel()}); found {joins}")
    frames = x.unfold(0, size, hop)                                  # (T, size)
    window = torch.hann_window(size, periodic=False, dtype=torch.float32)
    mag = torch.fft.rfft(frames * window, dim=1).abs()               # (T, F)
    energy_db = 10 * torch.log10(frames.pow(2).mean(1) + 1e-12)
    jump = (energy_db[1:] - energy_db[:-1]).abs()                    # between frame t-1 and t, indexed by t
    flux = torch.relu(mag[1:] - mag[:-1]).sum(1) / (mag[:-1].sum(1) + 1e-9)
    starts = torch.arange(1, frames.shape[0]) * hop                  # frame t's first sample
    at_join = torch.zeros_like(flux, dtype=torch.bool)
    inside = torch.ones_like(flux, dtype=torch.bool)
    for j in joins:
        # frame t (with t-1) spans [start(t-1), start(t) + size)
        touches = (starts - hop <= j) & (j < starts + size)
        at_join |= touches
        near = (starts - hop - guard_frames * hop <= j) & (j < starts + size + guard_frames * hop)
        inside &= ~near
    if not inside.any():
        raise InputError("the joins leave no frame away from them to compare with; use a longer waveform")
    return JoinReport(join_energy_jump_db=float(jump[at_join].max()),
                      inside_energy_jump_db=float(torch.quantile(jump[inside], 0.95)),
                      join_flux=float(flux[at_join].max()), inside_flux=float(torch.quantile(flux[inside], 0.95)),
                      quietest_db=float((energy_db - energy_db.median()).min()))
