"""Qwen2-VL-7B-Instruct: dynamic-resolution ViT, 2x2 patch merger, Qwen2 decoder with M-RoPE.

A 336x336 image gives 24x24 patches of 14 px, merged 2x2 into 144 image
tokens. Positions are 3-D (temporal, height, width): image tokens get grid
positions, and text after the image resumes at the largest image position + 1
on all three axes, which is what the packed rows use for every scenario.
"""

from __future__ import annotations

import torch

from mmscale_core.models.vlm.backbone import Prefix, VLMBackbone


class Qwen2VLBackbone(VLMBackbone):
    registry_name = "qwen2-vl"
    hub_id = "Qwen/Qwen2-VL-7B-Instruct"
    model_class = "Qwen2VLForConditionalGeneration"

    decoder_path = "model.language_model"
    prefix_template = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                       "<|vision_start|>{image}<|vision_end|>{prompt}\nScenario:\n")
    answer_tail = "<|im_end|>\n<|im_start|>assistant\n"

    def _image_features(self, prefix: Prefix) -> torch.Tensor:
        out = self.model.model.get_image_features(prefix.inputs["pixel_values"], prefix.inputs["image_grid_thw"])
        return torch.cat(out.pooler_output)

    def _prefix_positions(self, prefix: Prefix) -> torch.Tensor:
        positions, _ = self.model.model.get_rope_index(
            prefix.input_ids[None], mm_token_type_ids=prefix.inputs["mm_token_type_ids"],
            image_grid_thw=prefix.inputs["image_grid_thw"])
        return positions[:, 0]

    def _naive_hidden(self, prefix: Prefix, input_ids: torch.Tensor) -> torch.Tensor:
        types = prefix.inputs["mm_token_type_ids"][0]
        types = torch.cat([types, types.new_zeros(input_ids.numel() - types.numel())])
        return self.model.model(
            input_ids=input_ids[None], pixel_values=prefix.inputs["pixel_values"],
            image_grid_thw=prefix.inputs["image_grid_thw"], mm_token_type_ids=types[None], use_cache=False,
        ).last_hidden_state[0]
