"""Shared-prefix lists as one packed sequence with a block attention mask.

A list is one image with n scenarios. The paper's naive path runs the language
model on ``[prefix][scenario i]`` once per scenario, so the image tokens and
the prompt (the *prefix*, P tokens) are encoded n times. Here each list
becomes one row::

    [prefix (P)] [scenario 1 (S1)] [scenario 2 (S2)] ... [scenario n (Sn)] [pad]

with a block attention mask: prefix tokens attend causally to the prefix;
tokens of scenario i attend to the whole prefix and causally to scenario i,
never to another scenario. Position ids restart after the prefix for every
scenario (``start + 0, start + 1, ...``, ``start`` = the position the first
text token after the prefix has in the naive sequence), so every scenario
token sees exactly the keys, values and rotary positions it sees in the naive
sequence. The hidden state at each scenario's last token therefore equals the
naive one up to float summation order, and so do the gradients, which flow
back through the shared prefix's keys/values to the image features in the
same backward pass (one prefix, gradients from all n scenarios summed).

Why a packed row rather than reusing a prefix KV cache expanded over the n
scenarios: one forward call per batch through the unmodified decoder (a 4-D
additive mask and explicit position ids are inputs every transformers decoder
accepts), no cache objects to keep differentiable, and lists of different
prefix lengths and list sizes batch together with plain right padding. The
attention cost is (P + sum S)^2 per row instead of n (P + S) S, negligible
next to the linear layers at these lengths.

Padding tokens attend only to themselves, so no softmax row is empty (an
all-masked row gives NaN, and NaN times a zero gradient is still NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedLists:
    """Decoder inputs for B lists, one packed row each (L = longest row)."""

    inputs_embeds: torch.Tensor  # (B, L, d)
    position_ids: torch.Tensor  # (k, B, L), k = 1 for 1-D rotary, 3 for Qwen2-VL's M-RoPE
    attention_mask: torch.Tensor  # (B, 1, L, L) additive: 0 where allowed, dtype min elsewhere
    score_index: torch.Tensor  # (B, n_max) row index of each scenario's last token (0 in padded slots)


def pack_lists(
    prefix_embeds: list[torch.Tensor],
    prefix_positions: list[torch.Tensor],
    scenario_embeds: list[list[torch.Tensor]],
) -> PackedLists:
    """Pack each list's prefix (P_b, d) and scenarios (S_i, d) into one row.

    ``prefix_positions[b]`` is (k, P_b); scenario tokens continue from its
    maximum + 1 (true for plain 1-D positions and for M-RoPE, where text after
    an image resumes at the largest image position + 1).
    """
    batch = len(prefix_embeds)
    first = prefix_embeds[0]
    k = prefix_positions[0].shape[0]
    n_max = max(len(s) for s in scenario_embeds)
    lengths = [p.shape[0] + sum(s.shape[0] for s in scen) for p, scen in zip(prefix_embeds, scenario_embeds)]
    length = max(lengths)

    rows, positions = [], torch.zeros(k, batch, length, dtype=torch.long, device=first.device)
    segment = torch.full((batch, length), -1, dtype=torch.long, device=first.device)  # -1 pad, 0 prefix, i+1 scen.
    score_index = torch.zeros(batch, n_max, dtype=torch.long, device=first.device)
    for b, (prefix, prefix_pos, scenarios) in enumerate(zip(prefix_embeds, prefix_positions, scenario_embeds)):
        n_prefix = prefix.shape[0]
        positions[:, b, :n_prefix] = prefix_pos
        segment[b, :n_prefix] = 0
        start, offset = int(prefix_pos.max()) + 1, n_prefix
        for i, scenario in enumerate(scenarios):
            n_tokens = scenario.shape[0]
            positions[:, b, offset : offset + n_tokens] = torch.arange(start, start + n_tokens, device=first.device)
            segment[b, offset : offset + n_tokens] = i + 1
            score_index[b, i] = offset + n_tokens - 1
            offset += n_tokens
        padding = first.new_zeros(length - offset, first.shape[-1])
        rows.append(torch.cat([prefix, *scenarios, padding]))

    return PackedLists(
        inputs_embeds=torch.stack(rows),
        position_ids=positions,
        attention_mask=block_mask(segment, first.dtype),
        score_index=score_index,
    )


def block_mask(segment: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, L, L) additive mask from per-token segments (-1 pad, 0 prefix, i >= 1 scenario i).

    allowed(q, k) = k <= q and (seg k == 0 or seg k == seg q), for non-pad q, k;
    a pad query attends only to itself.
    """
    length = segment.shape[1]
    idx = torch.arange(length, device=segment.device)
    causal = idx[None, :] <= idx[:, None]  # (q, k)
    seg_q, seg_k = segment[:, :, None], segment[:, None, :]
    same_block = (seg_k == 0) | (seg_k == seg_q)
    real = (seg_q >= 0) & (seg_k >= 0)
    allowed = (causal & same_block & real) | (idx[:, None] == idx[None, :])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def gather_scores(hidden: torch.Tensor, score_index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, d) hidden states -> (B, n_max, d) at each scenario's scoring token, zeros in padded slots."""
    picked = torch.gather(hidden, 1, score_index[..., None].expand(-1, -1, hidden.shape[-1]))
    return picked * mask[..., None].to(picked.dtype)
