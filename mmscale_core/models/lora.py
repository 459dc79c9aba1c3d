"""LoRA exactly as the paper (sec 13): r=4, alpha=16, dropout 0.05, bias none.

The paper targets ``q_proj/k_proj/v_proj/o_proj``; each backbone names its
equivalent modules in ``Backbone.lora_target_modules`` (for BERT-style
encoders: ``query/key/value/attention.output.dense``).
"""

from __future__ import annotations

from mmscale_core.models._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # peft imports transformers, which imports torchvision

from peft import LoraConfig, get_peft_model  # noqa: E402

PAPER_LORA = dict(r=4, lora_alpha=16, lora_dropout=0.05, bias="none")


def lora_config(target_modules: list[str], **overrides) -> LoraConfig:
    return LoraConfig(target_modules=list(target_modules), **{**PAPER_LORA, **overrides})


def apply_lora(model, target_modules: list[str], **overrides):
    """Wrap ``model`` in a ``PeftModel`` with the paper's LoRA on ``target_modules``."""
    return get_peft_model(model, lora_config(target_modules, **overrides))
