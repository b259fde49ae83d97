"""The DAC-style continuous audio VAE of HunyuanVideo-Foley (shared/spec/official_apps.md §C.3).

A mono waveform goes through a convolutional encoder (strided weight-normalised convolutions with
Snake activations and dilated residual units) to ``2·latent`` channels, read as the mean and
log-variance of a diagonal Gaussian (``quant_conv``); decoding maps latents through
``post_quant_conv`` and the mirrored decoder (transposed convolutions) straight to a waveform in
[-1, 1]. There is no mel spectrogram and no vocoder. Latents are used unscaled.

Module attribute names and ``nn.Sequential`` indices are the checkpoint keys
(``encoder.block.N…``, ``decoder.model.N…``, ``weight_g`` / ``weight_v`` of the weight norm,
``alpha`` of the Snake activations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError

# The residual units of every encoder / decoder block: kernel 7 at these dilations.
RESIDUAL_DILATIONS = (1, 3, 9)


@dataclass(frozen=True)
class DacConfig:
    encoder_dim: int
    encoder_rates: Tuple[int, ...]
    latent_dim: int
    decoder_dim: int
    decoder_rates: Tuple[int, ...]
    sample_rate: int

    def __post_init__(self) -> None:
        if math.prod(self.encoder_rates) != math.prod(self.decoder_rates):
            raise InputError(f"encoder rates {self.encoder_rates} and decoder rates {self.decoder_rates} must give "
                             f"the same hop length")
        if self.decoder_dim % 2 ** len(self.decoder_rates):
            raise InputError(f"decoder_dim {self.decoder_dim} must halve {len(self.decoder_rates)} times")

    @property
    def hop_length(self) -> int:
        """Waveform samples per latent frame (960 for 48 kHz at 50 latent frames/s)."""
        return math.prod(self.encoder_rates)

    def decoder_context_frames(self) -> int:
        """Latent frames on each side that can change a decoded sample (a safe upper bound): chunks
        decoded with this much context on each side equal one whole decode."""
        frames, rate = 3.0, 1   # the first kernel-7 convolution, at the latent rate
        for stride in self.decoder_rates:
            frames += 2 / rate                                    # transposed conv, kernel 2·stride
            rate *= stride
            frames += sum(3 * d for d in RESIDUAL_DILATIONS) / rate   # residual units, kernel 7
        frames += 3 / rate                                        # the last kernel-7 convolution
        return math.ceil(frames) + 1


class Snake1d(nn.Module):
    """x + sin²(αx)/α per channel: a periodic activation that suits waveforms."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.to(x.dtype)
        return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


def _weight_norm(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # torch.nn.utils.weight_norm(dim=0): one norm per slice of the first axis (output channels of a
    # Conv1d, *input* channels of a ConvTranspose1d, whose weight is (in, out, k)).
    return v * (g / v.norm(dim=tuple(range(1, v.dim())), keepdim=True))


class _WeightNormed:
    """The layer's weight stored as ``weight_g`` (one norm per slice of the first axis) and ``weight_v``
    (directions), recombined at every call, as ``torch.nn.utils.weight_norm`` checkpoints keep it."""

    def _split_weight(self) -> None:
        weight = self.weight
        del self.weight
        self.weight_g = nn.Parameter(weight.detach().flatten(1).norm(dim=1)[:, None, None].clone())
        self.weight_v = nn.Parameter(weight.detach().clone())

    def _weight_and_bias(self, x: torch.Tensor):
        weight = _weight_norm(self.weight_v.to(x.dtype), self.weight_g.to(x.dtype))
        return weight, None if self.bias is None else self.bias.to(x.dtype)


class WNConv1d(_WeightNormed, nn.Conv1d):
    """Conv1d with a weight-normalised weight."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *self._weight_and_bias(x))


class WNConvTranspose1d(_WeightNormed, nn.ConvTranspose1d):
    """ConvTranspose1d with a weight-normalised weight."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self._weight_and_bias(x)
        return F.conv_transpose1d(x, weight, bias, self.stride, self.padding, self.output_padding, self.groups,
                                  self.dilation)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(Snake1d(dim), WNConv1d(dim, dim, 7, dilation=dilation, padding=3 * dilation),
                                   Snake1d(dim), WNConv1d(dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class EncoderBlock(nn.Module):
    """Three residual units at ``dim/2`` channels, then a strided conv down by ``stride`` to ``dim``."""

    def __init__(self, dim: int, stride: int):
        super().__init__()
        half = dim // 2
        self.block = nn.Sequential(*(ResidualUnit(half, d) for d in RESIDUAL_DILATIONS), Snake1d(half),
                                   WNConv1d(half, dim, 2 * stride, stride=stride, padding=math.ceil(stride / 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DecoderBlock(nn.Module):
    """A transposed conv up by ``stride`` (``in_dim`` -> ``out_dim``), then three residual units."""

    def __init__(self, in_dim: int, out_dim: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(in_dim),
            WNConvTranspose1d(in_dim, out_dim, 2 * stride, stride=stride, padding=math.ceil(stride / 2),
                              output_padding=stride % 2),
            *(ResidualUnit(out_dim, d) for d in RESIDUAL_DILATIONS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Encoder(nn.Module):
    def __init__(self, cfg: DacConfig):
        super().__init__()
        dim = cfg.encoder_dim
        layers: List[nn.Module] = [WNConv1d(1, dim, 7, padding=3)]
        for stride in cfg.encoder_rates:   # channels double at every downsampling
            dim *= 2
            layers.append(EncoderBlock(dim, stride))
        layers += [Snake1d(dim), WNConv1d(dim, cfg.latent_dim, 3, padding=1)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class Decoder(nn.Module):
    def __init__(self, cfg: DacConfig):
        super().__init__()
        dim = cfg.decoder_dim
        layers: List[nn.Module] = [WNConv1d(cfg.latent_dim, dim, 7, padding=3)]
        for stride in cfg.decoder_rates:   # channels halve at every upsampling
            layers.append(DecoderBlock(dim, dim // 2, stride))
            dim //= 2
        layers += [Snake1d(dim), WNConv1d(dim, 1, 7, padding=3), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DacVae(nn.Module):
    def __init__(self, cfg: DacConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv1d(cfg.latent_dim, 2 * cfg.latent_dim, 1)
        self.post_quant_conv = nn.Conv1d(cfg.latent_dim, cfg.latent_dim, 1)
        self.decoder = Decoder(cfg)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def encode_distribution(self, audio: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, N) waveform -> mean and log-variance (clamped to [-30, 20]), each (B, latent, ⌈N/hop⌉).
        The waveform is zero-padded on the right to a whole number of latent frames."""
        if audio.dim() != 3 or audio.shape[1] != 1 or audio.shape[2] == 0:
            raise InputError(f"audio must be a (B, 1, N) mono waveform with N > 0; found {tuple(audio.shape)}")
        hop = self.config.hop_length
        audio = F.pad(audio, (0, -audio.shape[-1] % hop))
        mean, logvar = self.quant_conv(self.encoder(audio.to(self.quant_conv.weight.dtype))).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, 1, N) waveform -> (B, latent, ⌈N/hop⌉) latents: the posterior mean (mode)."""
        return self.encode_distribution(audio)[0]

    def decode(self, z: torch.Tensor, chunk_frames: Optional[int] = None) -> torch.Tensor:
        """(B, latent, L) latents -> (B, 1, L·hop) waveform in [-1, 1].

        ``chunk_frames`` decodes L in pieces of that many latent frames, each with enough context
        on both sides (:meth:`DacConfig.decoder_context_frames`) that the result equals one whole
        decode; memory then stays bounded for long audio."""
        cfg = self.config
        if z.dim() != 3 or z.shape[1] != cfg.latent_dim or z.shape[2] == 0:
            raise InputError(f"latents must be (B, {cfg.latent_dim}, L) with L > 0; found {tuple(z.shape)}")
        z = z.to(self.post_quant_conv.weight.dtype)
        length = z.shape[2]
        if chunk_frames is None or chunk_frames >= length:
            return self.decoder(self.post_quant_conv(z))
        if chunk_frames < 1:
            raise InputError(f"chunk_frames must be at least 1; found {chunk_frames}")
        context, hop = cfg.decoder_context_frames(), cfg.hop_length
        pieces = []
        for start in range(0, length, chunk_frames):
            end = min(start + chunk_frames, length)
            lo, hi = max(0, start - context), min(length, end + context)
            audio = self.decoder(self.post_quant_conv(z[:, :, lo:hi]))
            pieces.append(audio[:, :, (start - lo) * hop:(end - lo) * hop])
        return torch.cat(pieces, dim=2)
