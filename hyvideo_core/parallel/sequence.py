"""Sequence parallel for the video transformer, as an extension (no change to the model).

Image tokens are sharded over the sequence ranks (padded to a multiple of their count, the pads
masked out as keys); text tokens are replicated. Around every attention (the forward context's
attention seam) the shards are combined:

* **Ulysses** (DeepSpeed-Ulysses): an all-to-all turns (tokens/N, all heads) into (all tokens,
  heads/N); each rank attends over the whole sequence for its heads, and the reverse all-to-all
  brings the image outputs back. Text queries/keys take the rank's head slice; text outputs are
  all-gathered over heads. The degree must divide the head count.
* **Ring**: queries stay local, key/value blocks travel around the ring and the partial results
  are merged with their log-sum-exp (online softmax). Any degree; used for the ranks Ulysses
  cannot take. Ulysses × ring: Ulysses inside a ring member, the ring across members.

RoPE rows and per-token modulation groups (image-to-video's clean first frame) are sharded with
the tokens; before the final layer the image tokens are all-gathered and the pads dropped, so
every rank computes the same output.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple

import torch
import torch.distributed as dist

from ..attention import attention
from ..model.extension import Extension, ForwardContext
from ..model.layers import Conditioning
from .mesh import ParallelGroups

log = logging.getLogger(__name__)


def _seq_to_heads(x: torch.Tensor, group, size: int) -> torch.Tensor:
    """(B, L, H, D) local tokens, all heads -> (B, size·L, H/size, D) all group tokens, my heads."""
    b, length, heads, dim = x.shape
    send = x.reshape(b, length, size, heads // size, dim).permute(2, 0, 1, 3, 4).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)          # dim 0: destination -> source rank
    return recv.permute(1, 0, 2, 3, 4).reshape(b, size * length, heads // size, dim)


def _heads_to_seq(x: torch.Tensor, group, size: int) -> torch.Tensor:
    """Inverse of :func:`_seq_to_heads`."""
    b, total, h, dim = x.shape
    send = x.reshape(b, size, total // size, h, dim).permute(1, 0, 2, 3, 4).contiguous()
    recv = torch.empty_like(send)
    dist.all_to_all_single(recv, send, group=group)
    return recv.permute(1, 2, 0, 3, 4).reshape(b, total // size, size * h, dim)


def _gather_heads(x: torch.Tensor, group, size: int) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=2)


def _attend_with_lse(q, k, v, key_mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention in float32 that also returns the log-sum-exp per (B, H, L_q)."""
    qf, kf, vf = (t.float().transpose(1, 2) for t in (q, k, v))
    scores = qf @ kf.transpose(-1, -2) / qf.shape[-1] ** 0.5
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse[..., None].clamp_min(-1e30)).nan_to_num(0.0)
    return (weights @ vf).transpose(1, 2), lse


def _merge(acc: Optional[Tuple[torch.Tensor, torch.Tensor]], out: torch.Tensor, lse: torch.Tensor):
    if acc is None:
        return out, lse
    acc_out, acc_lse = acc
    new_lse = torch.logaddexp(acc_lse, lse)
    w_acc = torch.exp(acc_lse - new_lse).nan_to_num(0.0).transpose(1, 2)[..., None]
    w_new = torch.exp(lse - new_lse).nan_to_num(0.0).transpose(1, 2)[..., None]
    return acc_out * w_acc + out * w_new, new_lse


class SequenceParallel(Extension):
    name = "sequence_parallel"
    outermost = True
    cache_policy = "with_blocks"

    def __init__(self, groups: ParallelGroups):
        self.groups = groups
        self._padded_warned = False

    # -- sharding -----------------------------------------------------------------------------
    def embed_tokens(self, ctx: ForwardContext, img: torch.Tensor) -> torch.Tensor:
        g = self.groups
        total = img.shape[1]
        shard = g.shard_length(total)
        padded = shard * g.config.sequence
        start = g.sequence_index * shard
        if padded != total and not self._padded_warned:
            self._padded_warned = True
            log.info("sequence parallel: %d image tokens padded to %d (a multiple of %d ranks); pads are masked",
                     total, padded, g.config.sequence)
        if padded != total:
            img = torch.cat([img, img.new_zeros(img.shape[0], padded - total, img.shape[2])], dim=1)
            ctx.rope = torch.cat([ctx.rope, ctx.rope.new_ones(padded - total, ctx.rope.shape[1])], dim=0)
        ctx.rope = ctx.rope[start:start + shard]
        cond = ctx.cond
        if cond.first is not None:   # a leading group of tokens with their own modulation
            ctx.cond = Conditioning(cond.vec, cond.first, max(0, min(shard, cond.first_tokens - start)))
        ctx.state["sp_tokens"] = (total, padded, start)
        ctx.state["real_tokens"] = max(0, min(shard, total - start))   # this shard's tokens before the pads
        ctx.state["token_sums"] = self._sum_over_ranks            # step caches agree on one decision
        ctx.attention_fn = self._attention_for(ctx)
        return img[:, start:start + shard]

    def before_final(self, ctx: ForwardContext, img: torch.Tensor) -> torch.Tensor:
        g = self.groups
        total, _, _ = ctx.state["sp_tokens"]
        parts = [torch.empty_like(img) for _ in range(g.config.sequence)]
        dist.all_gather(parts, img.contiguous(), group=g.sequence_group)
        return torch.cat(parts, dim=1)[:, :total]

    def _sum_over_ranks(self, partial: torch.Tensor) -> torch.Tensor:
        total = partial.clone()
        dist.all_reduce(total, group=self.groups.sequence_group)
        return total

    # -- attention ----------------------------------------------------------------------------
    def _attention_for(self, ctx: ForwardContext):
        g = self.groups
        cfg = g.config
        total = ctx.state["sp_tokens"][0]

        def sequence_attention(q, k, v, mask=None, backend=None):
            n_img = ctx.img_len
            txt_mask = None if mask is None else mask[:, n_img:]
            heads = q.shape[2]
            if cfg.ulysses > 1:
                h = heads // cfg.ulysses
                lo = g.ulysses_index * h
                img = [_seq_to_heads(t[:, :n_img], g.ulysses_group, cfg.ulysses) for t in (q, k, v)]
                txt = [t[:, n_img:, lo:lo + h] for t in (q, k, v)]
            else:
                img, txt = [t[:, :n_img] for t in (q, k, v)], [t[:, n_img:] for t in (q, k, v)]
            block_len = img[0].shape[1]                          # image tokens of one ring member
            if cfg.ring == 1:
                out = self._local(img, txt, txt_mask, block_len, total, backend)
            else:
                out = self._ring(img, txt, txt_mask, block_len, total)
            out_img, out_txt = out[:, :block_len], out[:, block_len:]
            if cfg.ulysses > 1:
                out_img = _heads_to_seq(out_img, g.ulysses_group, cfg.ulysses)
                out_txt = _gather_heads(out_txt, g.ulysses_group, cfg.ulysses)
            return torch.cat([out_img, out_txt], dim=1)
        return sequence_attention

    def _image_valid(self, ring_member: int, block_len: int, total: int, batch: int, device) -> Optional[torch.Tensor]:
        first = ring_member * block_len
        if first + block_len <= total:
            return None
        valid = torch.arange(first, first + block_len, device=device) < total
        return valid[None].expand(batch, -1)

    def _key_mask(self, img_valid, txt_mask, batch, block_len, txt_len, device):
        if img_valid is None and txt_mask is None:
            return None
        img_part = img_valid if img_valid is not None else torch.ones(batch, block_len, dtype=torch.bool, device=device)
        txt_part = txt_mask if txt_mask is not None else torch.ones(batch, txt_len, dtype=torch.bool, device=device)
        return torch.cat([img_part, txt_part.bool()], dim=1)

    def _local(self, img, txt, txt_mask, block_len, total, backend):
        q, k, v = (torch.cat([a, b], dim=1) for a, b in zip(img, txt))
        b = q.shape[0]
        keys = self._key_mask(self._image_valid(0, block_len, total, b, q.device), txt_mask, b, block_len,
                              txt[0].shape[1], q.device)
        if keys is not None and not keys[:, :block_len].all():
            keys = keys[:, None, None, :]   # pads inside the sequence: a full mask (varlen needs right padding)
        return attention(q, k, v, mask=keys, backend=backend)

    def _ring(self, img, txt, txt_mask, block_len, total):
        g = self.groups
        r, me = g.config.ring, g.ring_index
        q = torch.cat([img[0], txt[0]], dim=1)
        b = q.shape[0]
        # the text keys/values are the same on every ring member: attend to them once
        acc = _attend_with_lse(q, txt[1], txt[2], None if txt_mask is None else txt_mask.bool())
        k_blk, v_blk = img[1].contiguous(), img[2].contiguous()
        for step in range(r):
            member = (me - step) % r
            valid = self._image_valid(member, block_len, total, b, q.device)
            nxt = None
            if step < r - 1:
                nxt = self._pass_along(k_blk, v_blk)
            acc = _merge(acc, *_attend_with_lse(q, k_blk, v_blk, valid))
            if nxt is not None:
                k_blk, v_blk = nxt
        return acc[0].to(q.dtype)

    def _pass_along(self, k: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Send this block to the next ring member, receive the previous member's."""
        g = self.groups
        ranks, me = g.ring_ranks, g.ring_index
        send_to, recv_from = ranks[(me + 1) % len(ranks)], ranks[(me - 1) % len(ranks)]
        k_in, v_in = torch.empty_like(k), torch.empty_like(v)
        ops = [dist.P2POp(dist.isend, k, send_to, g.ring_group), dist.P2POp(dist.isend, v, send_to, g.ring_group),
               dist.P2POp(dist.irecv, k_in, recv_from, g.ring_group),
               dist.P2POp(dist.irecv, v_in, recv_from, g.ring_group)]
        for req in dist.batch_isend_irecv(ops):
            req.wait()
        return k_in, v_in

