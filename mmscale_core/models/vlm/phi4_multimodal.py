"""``phi-3-vision``: Phi-3-Vision has no native transformers class, so this is Phi-4-multimodal.

microsoft/Phi-3-vision-128k-instruct ships remote code written for
transformers 4.x; remote code is not run here. The nearest native class is
``Phi4MultimodalForCausalLM`` (microsoft/Phi-4-multimodal-instruct), Phi-3-
Vision's successor in the same family: the same HD-crop image embedding
(a global view plus sub-crops with learned row/column separators, projected
into a Phi decoder with fused ``qkv_proj``), with a SigLIP instead of a CLIP
vision encoder, a Phi-4-mini decoder, and an audio encoder left unused here.
The checkpoint's own ``vision-lora`` adapter, if present, is merged before
training (see ``checkpoint.load_pretrained``).

LoRA: the paper's ``q/k/v/o_proj`` names would only hit ``o_proj`` of a Phi
decoder (its q, k, v are one fused ``qkv_proj``) and would also hit the audio
encoder; so the targets are the decoder's ``qkv_proj``/``o_proj`` and the
vision encoder's ``q/k/v_proj``, by full module name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmscale_core.models.vlm.backbone import Prefix, VLMBackbone

LORA_SUFFIXES = ("q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj")


class Phi4MultimodalBackbone(VLMBackbone):
    registry_name = "phi-3-vision"
    hub_id = "microsoft/Phi-4-multimodal-instruct"
    model_class = "Phi4MultimodalForCausalLM"

    decoder_path = "model"
    prefix_template = "<|user|>{image}{prompt}\nScenario:\n"
    answer_tail = "<|end|><|assistant|>"

    def __init__(self, model, processor, **kwargs):
        super().__init__(model, processor, **kwargs)
        self.lora_target_modules = [
            name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.endswith(LORA_SUFFIXES) and ".audio_embed." not in name
        ]

    @classmethod
    def after_load(cls, model: nn.Module, directory) -> nn.Module:
        """Merge the checkpoint's own vision LoRA (``vision-lora/``), without which it sees images poorly."""
        adapter = Path(directory) / "vision-lora"
        if not (adapter / "adapter_config.json").is_file():
            return model
        from peft import PeftModel

        return PeftModel.from_pretrained(model, adapter).merge_and_unload()

    @property
    def image_token_id(self) -> int:
        return int(self.model.config.vision_config.image_token_id)

    def _vision_kwargs(self, prefix: Prefix) -> dict:
        keys = ("image_pixel_values", "image_sizes", "image_attention_mask")
        return {k: prefix.inputs[k] for k in keys}

    def _prefix_embeds(self, prefix: Prefix) -> torch.Tensor:
        # the image features are merged inside the model's extended embedding
        ids = prefix.input_ids[None]
        embeds = self.decoder.embed_tokens(ids)
        return self.decoder.embed_tokens_extend(ids, embeds, **self._vision_kwargs(prefix))[0]

    def _naive_hidden(self, prefix: Prefix, input_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(input_ids=input_ids[None], use_cache=False,
                            **self._vision_kwargs(prefix)).last_hidden_state[0]
