"""A local VLM checkpoint as a prompted judge: greedy decoding, or the expected rating.

Both modes lay a query out the same way: the model's chat template (the
processor's, or, when it has none, the backbone's own chat layout) around a
user turn of the image and the prompt, up to where the assistant answers. The
rendered chat is cut at the scenario: the *prefix* (chat header, image,
instruction, exemplars) is the same for every scenario of an image, the
*suffix* (scenario, the rest of the prompt, the chat tail) is each
scenario's own. Prefix and suffix are tokenized separately, as in training
(:mod:`mmscale_core.models.vlm.backbone`), so every path sees the same ids.

``generate`` (the upstream's scoring): greedy decoding of prefix + suffix,
one pair at a time, and the answer parsed by :func:`~mmscale_core.judges.parsing.parse_rating`.

``expected`` (new here): no decoding. At the answer position the model's
next-token distribution, restricted to the five tokens ``1`` ... ``5`` and
renormalised, gives the expected rating ``sum_k k p_k``: a continuous score
in [1, 5], no parse failures, no ties. All scenarios of one image go through
one packed forward (:mod:`mmscale_core.models.vlm.packing`: each scenario
attends to the shared prefix and itself), so the image is encoded once per
list; :meth:`LocalJudge.expected_per_pair` is the one-pair-per-forward
reference the packed path must equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mmscale_core.errors import MmscaleError
from mmscale_core.judges.prompts import PromptTemplate
from mmscale_core.models.base import resize_max_side
from mmscale_core.models.vlm.backbone import PreparedLists, Prefix, VLMBackbone

RATING_TOKENS = ("1", "2", "3", "4", "5")
MARKER = "\x00SCENARIO\x00"

# A Qwen2-VL-style chat layout for checkpoints saved without a template (the tiny random-init model).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class ChatLayout:
    """The rendered chat around the scenario: ``prefix`` (with the image placeholder) and ``suffix``."""

    prefix: str
    suffix: str


def chat_layout(backbone: VLMBackbone, before: str, after: str) -> ChatLayout:
    """Render the user turn (image + ``before`` scenario ``after``) with the chat template, cut at the scenario."""
    template = getattr(backbone.processor, "chat_template", None)
    if template:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": before + MARKER + after}]}]
        rendered = backbone.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if rendered.count(MARKER) != 1:
            raise MmscaleError(f"backbone {backbone.registry_name!r}: the chat template does not render the "
                               f"prompt text once; cannot place the scenario")
        prefix, suffix = rendered.split(MARKER)
        return ChatLayout(prefix, suffix)
    # no template: the backbone's own chat layout (header + image placeholder, then the answer tail)
    header = backbone.prefix_template.split("{prompt}")[0].format(image=backbone.image_token)
    return ChatLayout(header + before, after + backbone.answer_tail)


def rating_token_ids(tokenizer) -> list[int]:
    """The ids of the tokens ``1`` ... ``5``; each must be one token of its own (the last piece if a word
    marker is split off), and all five distinct."""
    ids = []
    for digit in RATING_TOKENS:
        pieces = tokenizer.encode(digit, add_special_tokens=False)
        if not pieces or tokenizer.decode(pieces[-1:]).strip() != digit:
            raise MmscaleError(f"the tokenizer has no single token for the rating {digit!r} (got {pieces}); "
                               f"--scoring expected needs one; use --scoring generate")
        ids.append(pieces[-1])
    if len(set(ids)) != len(ids):
        raise MmscaleError(f"the tokenizer maps the ratings 1-5 to repeated token ids {ids}")
    return ids


def expected_from_logits(logits: torch.Tensor, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(n,) expected ratings and (n, 5) probabilities from (n, V) next-token logits over the rating tokens."""
    probs = torch.softmax(logits[:, ids].double(), dim=-1)
    scale = torch.arange(1, 6, dtype=probs.dtype, device=probs.device)
    return (probs @ scale).cpu().numpy(), probs.cpu().numpy()


class LocalJudge:
    """One backbone, one prompt: per image, the expected ratings (packed or pair by pair) or greedy answers."""

    def __init__(self, backbone: VLMBackbone, template: PromptTemplate, exemplars_block: str = "",
                 max_new_tokens: int = 16):
        self.backbone = backbone
        self.template = template
        self.before, self.after = template.around_scenario(exemplars_block)
        self.layout = chat_layout(backbone, self.before, self.after)
        self.max_new_tokens = max_new_tokens
        self.tokenizer = backbone.processor.tokenizer
        self._suffix_tail = self.tokenizer(self.layout.suffix, add_special_tokens=False)["input_ids"]
        self._rating_ids: list[int] | None = None

    @property
    def model_id(self) -> str:
        record = self.backbone.checkpoint or {}
        return record.get("path") or self.backbone.hub_id

    def prepare(self, image: Image.Image, scenarios: list[str]) -> PreparedLists:
        image = resize_max_side(image, self.backbone.max_image_side)
        prefix = self.backbone._process_prefix(image, self.layout.prefix)
        limit = self.backbone.max_scenario_tokens
        suffixes = [torch.tensor(self.tokenizer(text, add_special_tokens=False)["input_ids"][:limit]
                                 + self._suffix_tail) for text in scenarios]
        return PreparedLists([prefix], [suffixes], torch.ones(1, len(scenarios), dtype=torch.bool))

    def _expected(self, hidden: torch.Tensor) -> list[dict]:
        if self._rating_ids is None:
            self._rating_ids = rating_token_ids(self.tokenizer)
        logits = self.backbone.model.get_output_embeddings()(hidden)
        expected, probs = expected_from_logits(logits.float(), self._rating_ids)
        return [{"raw_output": json.dumps({d: round(float(p), 6) for d, p in zip(RATING_TOKENS, row)}),
                 "error": None, "prediction": float(e)} for e, row in zip(expected, probs)]

    @torch.no_grad()
    def expected(self, image: Image.Image, scenarios: list[str]) -> list[dict]:
        """Expected ratings of all ``scenarios`` of ``image`` in one packed forward."""
        hidden = self.backbone.encode_prepared(self.prepare(image, scenarios))[0]
        return self._expected(hidden)

    @torch.no_grad()
    def expected_per_pair(self, image: Image.Image, scenarios: list[str]) -> list[dict]:
        """The same, one full multimodal forward per scenario (the reference for the packed path)."""
        hidden = self.backbone.encode_naive_prepared(self.prepare(image, scenarios))[0]
        return self._expected(hidden)

    def _generate_inputs(self, prefix: Prefix, input_ids: torch.Tensor) -> dict:
        """The processor's extra inputs for the whole pair: token-aligned ones (e.g. Qwen2-VL's
        mm_token_type_ids) extended with zeros over the text after the prefix."""
        n_prefix, n_total = prefix.input_ids.numel(), input_ids.numel()
        extra = {}
        for key, value in prefix.inputs.items():
            if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (1, n_prefix) \
                    and not value.is_floating_point():
                value = torch.cat([value, value.new_zeros(1, n_total - n_prefix)], dim=1)
            extra[key] = value
        return extra

    def generate(self, image: Image.Image, scenarios: list[str]) -> list[dict]:
        """Greedy answers, one pair at a time, each parsed to a rating (or null)."""
        from mmscale_core.judges.parsing import parse_rating

        return [{"raw_output": raw, "error": None, "prediction": parse_rating(raw)}
                for raw in self.generate_raw(image, scenarios)]

    @torch.no_grad()
    def generate_raw(self, image: Image.Image, scenarios: list[str]) -> list[str]:
        """The greedy answer text of each pair, one pair at a time."""
        prepared = self.prepare(image, scenarios)
        prefix = self.backbone._on_device(prepared.prefixes[0])
        model = self.backbone.model
        pad = self.tokenizer.pad_token_id
        results = []
        for suffix in prepared.suffix_ids[0]:
            input_ids = torch.cat([prefix.input_ids, suffix.to(prefix.input_ids.device)])
            out = model.generate(input_ids=input_ids[None], attention_mask=torch.ones_like(input_ids)[None],
                                 **self._generate_inputs(prefix, input_ids), max_new_tokens=self.max_new_tokens,
                                 do_sample=False, num_beams=1, pad_token_id=pad)
            new = out[0, input_ids.numel():] if out.shape[1] > input_ids.numel() and torch.equal(
                out[0, :input_ids.numel()], input_ids) else out[0]
            results.append(self.tokenizer.decode(new, skip_special_tokens=True).strip())
        return results


def save_tiny_qwen2_vl(directory) -> str:
    """Save the tiny random-init Qwen2-VL (:mod:`mmscale_core.models.tiny`) with a chat template, as a
    checkpoint directory ``--backbone-arg path=DIR`` loads offline: the smoke/default stand-in for a
    real judge. Its ratings are noise and exist to exercise the code."""
    from pathlib import Path

    from mmscale_core.models.tiny import tiny_qwen2_vl

    model, processor = tiny_qwen2_vl()
    processor.chat_template = QWEN2_VL_CHAT_TEMPLATE
    directory = Path(directory)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
