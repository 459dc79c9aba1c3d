"""InstructBLIP-Vicuna-7B: EVA ViT + Q-Former (reads the instruction) + Vicuna (Llama) decoder.

The Q-Former cross-attends from 32 learned queries to the image *and* reads
the instruction text, so its output depends on the text it is given. To share
the image encoding across a list, the Q-Former always reads the fixed
instruction (``prompt``) only; the scenario goes into the language model's
input after the instruction. Both paths do this, so they agree exactly; it is
a (documented) change from feeding the whole per-scenario text to the
Q-Former, which would make the visual tokens scenario-specific.
"""

from __future__ import annotations

import torch

from mmscale_core.models.vlm.backbone import Prefix, VLMBackbone


class InstructBlipBackbone(VLMBackbone):
    registry_name = "instructblip"
    hub_id = "Salesforce/instructblip-vicuna-7b"
    model_class = "InstructBlipForConditionalGeneration"

    decoder_path = "language_model.model"
    prefix_template = "{prompt}\nScenario:\n"  # the processor puts the query placeholders in front itself
    answer_tail = "\nAnswer:"

    def _process_prefix(self, image, text=None):
        prefix = super()._process_prefix(image, text)
        qformer = self.processor.qformer_tokenizer(self.prompt, return_tensors="pt")
        prefix.inputs["qformer_input_ids"] = qformer["input_ids"]
        prefix.inputs["qformer_attention_mask"] = qformer["attention_mask"]
        return prefix

    def _vision_kwargs(self, prefix: Prefix) -> dict:
        keys = ("pixel_values", "qformer_input_ids", "qformer_attention_mask")
        return {k: prefix.inputs[k] for k in keys}

    def _image_features(self, prefix: Prefix) -> torch.Tensor:
        return self.model.get_image_features(**self._vision_kwargs(prefix), return_dict=True).pooler_output[0]

    def _naive_hidden(self, prefix: Prefix, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids[None], output_hidden_states=True, logits_to_keep=1,
                         use_cache=False, **self._vision_kwargs(prefix))
        return out.language_model_outputs.hidden_states[-1][0]
