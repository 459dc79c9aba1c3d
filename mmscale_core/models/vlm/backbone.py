"""What the four real-VLM backbones share: prompt layout, preparation, both encode paths.

Every pair is laid out as ``prefix + suffix``: the prefix is the chat header,
the image placeholder(s) and the instruction (the same for all scenarios of a
list); the suffix is the scenario and the chat tail up to where the assistant
would answer (``answer_tail``). The pooled representation of a pair is the
decoder's final (normed) hidden state at the suffix's last token, the token
from which the model would start its answer. Prefix, scenario and tail are
tokenized separately, so both paths see the same token ids.

``encode_naive`` is the paper's path: the model's own multimodal forward
(``model(input_ids, pixel_values, ...)``) on one pair at a time. ``encode``
runs the vision side once per list and the decoder once per batch on packed
rows (see :mod:`mmscale_core.models.vlm.packing`). Subclasses supply the
architecture specifics: templates, how image features are computed and
merged, positions, and the naive forward.

``prepare`` (processor work: resizing, pixel values, tokenization) is split
from the model work so a data loader can run it in workers and so the
benchmark times the model only; ``encode(batch)`` does both.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import nn

from mmscale_core.errors import MmscaleError
from mmscale_core.models.base import MAX_IMAGE_SIDE, Backbone, ListBatch, as_pil, resize_max_side
from mmscale_core.models.vlm.packing import gather_scores, pack_lists

# the packed rows need a 4-D block mask; transformers' flash-attention paths read a mask as 2-D padding
PACKED_ATTENTION = ("sdpa", "eager")

DEFAULT_PROMPT = (
    "Rate how morally acceptable the action in the scenario is, given the situation shown in the image, "
    "from 1 (clearly unacceptable) to 5 (clearly acceptable)."
)


@dataclass
class Prefix:
    """One list's image + prompt as the processor returns it (batch of one)."""

    input_ids: torch.Tensor  # (P,) with the image placeholders already expanded
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # pixel values, grids, sizes, ...


@dataclass
class PreparedLists:
    """A ``ListBatch`` after the processor: per list a prefix and one id tensor per scenario."""

    prefixes: list[Prefix]
    suffix_ids: list[list[torch.Tensor]]
    mask: torch.Tensor  # (B, n_max) bool

    def lm_tokens(self, shared_prefix: bool) -> int:
        """Tokens the language model processes: P + sum S per list, or sum (P + S) pair by pair."""
        total = 0
        for prefix, suffixes in zip(self.prefixes, self.suffix_ids):
            n_prefix = prefix.input_ids.numel()
            n_suffix = sum(s.numel() for s in suffixes)
            total += n_prefix + n_suffix if shared_prefix else n_prefix * len(suffixes) + n_suffix
        return total


def check_attention(backbone: str, implementation: str | None) -> None:
    """Refuse attention kernels that would silently ignore the packed path's block mask."""
    if implementation is not None and implementation not in PACKED_ATTENTION:
        raise MmscaleError(
            f"backbone {backbone!r}: attn_implementation {implementation!r} is not supported; the shared-prefix "
            f"path packs a list's scenarios into one row with a 4-D block mask, which {implementation} reads as a "
            f"2-D padding mask (scenarios would see each other). Use one of: {', '.join(PACKED_ATTENTION)}.")


class VLMBackbone(Backbone):
    """A Hugging Face VLM as a pair encoder; see the module docstring."""

    registry_name: str = ""
    hub_id: str = ""
    model_class: str = ""  # the transformers class the checkpoint loads into
    lora_target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the paper's list (sec 13)
    decoder_path: str = ""  # submodule of the HF model that is the text decoder
    prefix_template: str = ""  # with {image} (the processor's placeholder) and {prompt}
    answer_tail: str = ""  # chat tail after the scenario; its last token is the scoring token

    def __init__(self, model: nn.Module, processor: Any, prompt: str = DEFAULT_PROMPT,
                 max_image_side: int = MAX_IMAGE_SIDE, max_scenario_tokens: int | None = None):
        super().__init__()
        self.model = model
        self.processor = processor
        self.prompt = prompt
        self.max_image_side = max_image_side
        self.max_scenario_tokens = max_scenario_tokens
        self.hidden_size = int(self.decoder.config.hidden_size)
        check_attention(self.registry_name, self.decoder.config._attn_implementation)
        # the checkpoint directory loaded and its commit / fingerprint (None for objects passed in)
        self.checkpoint: dict[str, str] | None = getattr(model, "mmscale_checkpoint", None)

    # ----- architecture specifics -------------------------------------------------------------
    @classmethod
    def after_load(cls, model: nn.Module, directory) -> nn.Module:
        """Hook for checkpoint-specific fix-ups after ``from_pretrained`` (default: none)."""
        return model

    @property
    def decoder(self) -> nn.Module:
        """The text decoder: ``(inputs_embeds, attention_mask, position_ids) -> last_hidden_state``."""
        return self.model.get_submodule(self.decoder_path)

    def prefix_text(self) -> str:
        """Chat header + image placeholder + instruction; identical for every scenario of a list."""
        return self.prefix_template.format(image=self.image_token, prompt=self.prompt)

    @abstractmethod
    def _naive_hidden(self, prefix: Prefix, input_ids: torch.Tensor) -> torch.Tensor:
        """(L, d) final hidden states of the model's own forward on one full pair ``input_ids``."""

    @property
    def image_token_id(self) -> int:
        return int(self.model.config.image_token_id)

    @property
    def image_token(self) -> str:
        token = self.processor.image_token
        return getattr(token, "content", token)

    def _image_features(self, prefix: Prefix) -> torch.Tensor:
        """(n_image_tokens, d) features that replace the image placeholders, in order."""
        raise NotImplementedError

    def _prefix_positions(self, prefix: Prefix) -> torch.Tensor:
        """(k, P) position ids of the prefix; plain 0..P-1 unless the model says otherwise."""
        return torch.arange(prefix.input_ids.numel(), device=prefix.input_ids.device)[None]

    def _prefix_embeds(self, prefix: Prefix) -> torch.Tensor:
        """(P, d) decoder inputs of the prefix: token embeddings with image features scattered in."""
        embeds = self.decoder.get_input_embeddings()(prefix.input_ids)
        features = self._image_features(prefix).to(embeds.dtype)
        placeholder = (prefix.input_ids == self.image_token_id)[:, None]
        return embeds.masked_scatter(placeholder, features)

    # ----- preparation (processor, no autograd) ------------------------------------------------
    def _process_prefix(self, image: Image.Image, text: str | None = None) -> Prefix:
        """The processor on the image and ``text`` (default :meth:`prefix_text`; the prompted judges
        give their own chat prefix)."""
        out = self.processor(images=[image], text=[self.prefix_text() if text is None else text],
                             return_tensors="pt")
        input_ids = out.pop("input_ids")[0]
        out.pop("attention_mask", None)
        return Prefix(input_ids=input_ids, inputs=dict(out))

    def _suffix_ids(self, scenario: str) -> torch.Tensor:
        """Scenario tokens (at most ``max_scenario_tokens``) + the answer tail's tokens."""
        tokenize = self.processor.tokenizer
        ids = tokenize(scenario, add_special_tokens=False)["input_ids"][: self.max_scenario_tokens]
        return torch.tensor(ids + tokenize(self.answer_tail, add_special_tokens=False)["input_ids"])

    def prepare(self, batch: ListBatch) -> PreparedLists:
        """Resize (longer side <= ``max_image_side``), run the processor, tokenize the scenarios."""
        prefixes = [self._process_prefix(resize_max_side(as_pil(image), self.max_image_side))
                    for image in batch.images]
        suffixes = [[self._suffix_ids(text) for text in texts] for texts in batch.texts]
        return PreparedLists(prefixes, suffixes, batch.mask.clone())

    # ----- encoding ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.get_input_embeddings().weight.dtype

    def _on_device(self, prefix: Prefix) -> Prefix:
        def move(value):
            if not isinstance(value, torch.Tensor):
                return value
            value = value.to(self.device)
            return value.to(self.dtype) if value.is_floating_point() else value

        return Prefix(move(prefix.input_ids), {k: move(v) for k, v in prefix.inputs.items()})

    def encode(self, batch: ListBatch) -> torch.Tensor:
        return self.encode_prepared(self.prepare(batch))

    def encode_naive(self, batch: ListBatch) -> torch.Tensor:
        return self.encode_naive_prepared(self.prepare(batch))

    def encode_prepared(self, prepared: PreparedLists) -> torch.Tensor:
        """Shared prefix: vision + prefix once per list, all lists in one decoder call."""
        embed = self.decoder.get_input_embeddings()
        prefix_embeds, prefix_positions, scenario_embeds = [], [], []
        for prefix, suffixes in zip(prepared.prefixes, prepared.suffix_ids):
            prefix = self._on_device(prefix)
            prefix_embeds.append(self._prefix_embeds(prefix))
            prefix_positions.append(self._prefix_positions(prefix))
            ids = torch.cat(suffixes).to(self.device)
            scenario_embeds.append(list(embed(ids).split([s.numel() for s in suffixes])))
        packed = pack_lists(prefix_embeds, prefix_positions, scenario_embeds)
        position_ids = packed.position_ids if packed.position_ids.shape[0] > 1 else packed.position_ids[0]
        hidden = self.decoder(
            inputs_embeds=packed.inputs_embeds,
            attention_mask=packed.attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state
        return gather_scores(hidden, packed.score_index, prepared.mask.to(self.device))

    def encode_naive_prepared(self, prepared: PreparedLists) -> torch.Tensor:
        """The paper's path: one full multimodal forward per (image, scenario) pair."""
        n_max = prepared.mask.shape[1]
        rows = []
        for prefix, suffixes in zip(prepared.prefixes, prepared.suffix_ids):
            prefix = self._on_device(prefix)
            pooled = [self._naive_hidden(prefix, torch.cat([prefix.input_ids, s.to(self.device)]))[-1]
                      for s in suffixes]
            padding = pooled[0].new_zeros(n_max - len(pooled), self.hidden_size)
            rows.append(torch.cat([torch.stack(pooled), padding]))
        return torch.stack(rows)
