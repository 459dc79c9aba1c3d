"""LLaVA-OneVision-7B: SigLIP tiles (anyres) + 2-layer projector + Qwen2 decoder.

The image becomes a base tile plus a grid of tiles, unpadded, with an
``image_newline`` feature after each row; all of it replaces the processor's
expanded ``<image>`` placeholders. Positions are plain 0..L-1.
"""

from __future__ import annotations

import torch

from mmscale_core.models.vlm.backbone import Prefix, VLMBackbone


class LlavaOnevisionBackbone(VLMBackbone):
    registry_name = "llava-onevision"
    hub_id = "llava-hf/llava-onevision-qwen2-7b-ov-hf"
    model_class = "LlavaOnevisionForConditionalGeneration"

    decoder_path = "model.language_model"
    prefix_template = "<|im_start|>user {image}\n{prompt}\nScenario:\n"
    answer_tail = "<|im_end|><|im_start|>assistant\n"

    def _vision_kwargs(self, prefix: Prefix) -> dict:
        keys = ("pixel_values", "image_sizes", "batch_num_images")
        return {k: prefix.inputs[k] for k in keys if k in prefix.inputs}

    def _image_features(self, prefix: Prefix) -> torch.Tensor:
        out = self.model.model.get_image_features(**self._vision_kwargs(prefix), return_dict=True)
        return torch.cat(out.pooler_output)

    def _naive_hidden(self, prefix: Prefix, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.model(input_ids=input_ids[None], use_cache=False,
                                **self._vision_kwargs(prefix)).last_hidden_state[0]
