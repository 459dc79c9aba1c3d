"""Embedded CPU backbones: pretrained weights, LoRA placement, shared prefix == naive path."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from mmscale_core.models._torchvision_compat import ensure_torchvision_importable  # noqa: E402

ensure_torchvision_importable()  # before timm / peft import torchvision
pytest.importorskip("timm")
pytest.importorskip("peft")

from PIL import Image  # noqa: E402

from mmscale_core.errors import MmscaleError  # noqa: E402
from mmscale_core.models import load_backbone  # noqa: E402
from mmscale_core.models.base import ListBatch  # noqa: E402
from mmscale_core.models.embedded import (  # noqa: E402
    TEXT_LORA_TARGETS, efficientnet_lite0_source_state_dict, imagenet_transform, load_efficientnet_lite0,
    pair_state_dicts,
)
from mmscale_core.models.heads import MODALITY_LABELS, ScoringModel  # noqa: E402
from mmscale_core.models.lora import apply_lora  # noqa: E402

TABBY_CAT, ESPRESSO = 281, 967  # ImageNet-1k class ids


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photos():
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.chelsea()), Image.fromarray(skimage_data.coffee())


def _batch(size: int = 64) -> ListBatch:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (size + 10 * i, size, 3), dtype=np.uint8)) for i in range(3)]
    texts = [
        ["helping an old man cross the street", "stealing his wallet", "ignoring him"],
        ["sharing a sandwich with a hungry child"],
        ["shouting at the waiter", "leaving a generous tip"],
    ]
    return ListBatch.from_lists(images, texts)


# --------------------------------------------------------------------------- pretrained weights

def test_state_dict_pairing_matches_every_tensor_in_order():
    import timm

    source = efficientnet_lite0_source_state_dict()
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    real = [k for k in source if not k.endswith("num_batches_tracked")]
    assert len(real) == 247 and len(source) == len(target) == 296
    paired = pair_state_dicts(source, target)
    assert list(paired) == list(target)
    assert paired["conv_stem.weight"] is source["_conv_stem.weight"]
    assert paired["classifier.weight"] is source["_fc.weight"]
    assert paired["blocks.6.0.conv_pwl.weight"] is source["_blocks.15._project_conv.weight"]

    with pytest.raises(ValueError, match="tensors"):
        pair_state_dicts(dict(list(source.items())[:-1]), target)
    swapped = dict(source)
    swapped["_conv_stem.weight"] = torch.zeros(3, 3, 3, 32)
    with pytest.raises(ValueError, match="does not fit"):
        pair_state_dicts(swapped, target)


def test_pretrained_effnet_classifies_package_photos():
    """scikit-image's photos: Chelsea is a tabby cat (281), the coffee cup an espresso (967)."""
    model = load_efficientnet_lite0()
    transform = imagenet_transform(model, 224)
    cat, coffee = _photos()
    with torch.no_grad():
        logits = model(torch.stack([transform(cat), transform(coffee)]))
    assert logits.argmax(-1).tolist() == [TABBY_CAT, ESPRESSO]


def test_text_tower_is_the_sentence_transformer():
    """Mean-pooled, unit-norm MiniLM: paraphrases are far closer than unrelated sentences."""
    backbone = load_backbone("minilm-text", max_length=32).eval()
    with torch.no_grad():
        emb = backbone.text(["a man is eating food", "a man eats a meal", "the stock market fell sharply"])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    sims = emb @ emb.T
    assert sims[0, 1] > 0.7 and sims[0, 2] < 0.3


# --------------------------------------------------------------------------- LoRA and shared prefix

@pytest.fixture(scope="module")
def lora_backbone():
    torch.manual_seed(0)
    backbone = load_backbone("minilm-effnet", image_size=64, max_length=16)
    model = apply_lora(backbone, backbone.lora_target_modules, modules_to_save=backbone.modules_to_save)
    with torch.no_grad():  # LoRA's B starts at zero; make the adapters do something
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    return model.eval()


def test_lora_uses_paper_settings_on_qkvo_and_pointwise_convs(lora_backbone):
    cfg = lora_backbone.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.bias) == (4, 16, 0.05, "none")
    trainable = [n for n, p in lora_backbone.named_parameters() if p.requires_grad]
    for layer in range(6):
        for module in ("attention.self.query", "attention.self.key", "attention.self.value",
                       "attention.output.dense"):
            assert any(f"layer.{layer}.{module}.lora_A" in n for n in trainable), (layer, module)
    assert not any("intermediate" in n or "output.dense" in n and "attention" not in n for n in trainable)
    image_lora = [n for n in trainable if n.startswith("base_model.model.image.") and "lora_A" in n]
    assert len(image_lora) == 2 * 5 + 1  # conv_pw + conv_pwl of 4 + 1 blocks, and conv_head
    assert not any(".trunk." in n for n in trainable)
    assert any(".fusion." in n for n in trainable)  # modules_to_save
    assert len(TEXT_LORA_TARGETS) == 4  # q, k, v, o: checked on every layer above


def test_text_lora_on_top_layers_only_and_a_frozen_tower_is_cached():
    """text_tuned_layers=k: LoRA on the top k layers; k=0: frozen, embeddings cached and equal to fresh ones."""
    top = load_backbone("minilm-text", max_length=16, text_tuned_layers=2)
    assert {t.split(".layer.")[1].split(".")[0] for t in top.lora_target_modules} == {"4", "5"}
    model = apply_lora(top, top.lora_target_modules)
    tuned = {n.split(".layer.")[1].split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert tuned == {"4", "5"}
    frozen = load_backbone("minilm-text", max_length=16, text_tuned_layers=0).eval()
    assert frozen.lora_target_modules == [] and not any(p.requires_grad for p in frozen.parameters())
    texts = [s for group in _batch().texts for s in group]
    assert frozen.warm_text_cache(texts) == len(set(texts))
    assert frozen.warm_text_cache(texts) == 0  # already cached
    cached = frozen.text(texts)
    fresh = frozen.text(texts, use_cache=False)
    torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-6)  # batch padding differs: float rounding only
    with pytest.raises(MmscaleError, match="text_tuned_layers"):
        load_backbone("minilm-text", text_tuned_layers=7)


def test_trunk_cache_is_bit_identical(lora_backbone):
    tower = lora_backbone.base_model.model.image
    images = _batch().images
    fresh = tower.trunk_features(images, use_cache=False)
    first = tower.trunk_features(images)
    cached = tower.trunk_features(images)
    assert torch.equal(fresh, first) and torch.equal(first, cached)


def test_frozen_tail_pools_once_per_image_and_matches_the_uncached_path():
    """tuning: frozen -> the image tower is a fixed function: its pooled output is cached per image,
    equal to computing it afresh; a tunable (LoRA) tail is never served from that cache."""
    images = _batch().images
    frozen = load_backbone("effnet-image", image_size=64).image.requires_grad_(False)
    frozen.train()  # as during training: the cache must still hold eval-mode outputs
    assert frozen.warm_cache(images) == len(images)
    assert len(frozen._pooled) == len(images)
    cached = frozen(images)
    frozen.eval()
    fresh = frozen(images, use_cache=False)
    torch.testing.assert_close(cached, fresh, rtol=1e-4, atol=1e-5)
    calls = []
    frozen.tail.register_forward_hook(lambda *_: calls.append(1))
    assert torch.equal(frozen(images[::-1]), cached.flip(0)) and not calls  # served from the cache

    tunable = load_backbone("effnet-image", image_size=64).image  # tail trainable, as under LoRA
    tunable.warm_cache(images)
    out = tunable(images)
    assert not tunable._pooled and out.requires_grad


def _grads(model, encode, batch, weights):
    model.zero_grad(set_to_none=True)
    out = encode(batch)
    (out * weights).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_shared_prefix_equals_naive_in_values_and_gradients(lora_backbone):
    batch = _batch()
    weights = torch.randn(*batch.mask.shape, lora_backbone.hidden_size, generator=torch.Generator().manual_seed(1))
    shared, g_shared = _grads(lora_backbone, lora_backbone.encode, batch, weights)
    naive, g_naive = _grads(lora_backbone, lora_backbone.encode_naive, batch, weights)
    assert shared.shape == (3, 3, 3 * 384)
    assert torch.all(shared[~batch.mask] == 0)
    torch.testing.assert_close(shared, naive, atol=1e-4, rtol=1e-4)
    assert set(g_shared) == set(g_naive) and len(g_shared) > 50
    assert any("image" in n for n in g_shared) and any("query" in n for n in g_shared)
    for name in g_shared:  # relative to the tensor's scale: float32 sums of ~1e3 terms differ by order
        scale = g_shared[name].abs().max().clamp_min(1e-6)
        assert (g_shared[name] - g_naive[name]).abs().max() <= 1e-4 * scale, name


@pytest.mark.parametrize("name, hidden", [("minilm-text", 384), ("effnet-image", 1280)])
def test_single_tower_ablations(name, hidden):
    backbone = load_backbone(name, image_size=64, max_length=16).eval()
    batch = _batch()
    with torch.no_grad():
        shared, naive = backbone.encode(batch), backbone.encode_naive(batch)
    assert backbone.hidden_size == hidden and shared.shape == (3, 3, hidden)
    torch.testing.assert_close(shared, naive, atol=1e-4, rtol=1e-4)
    if name == "effnet-image":  # the same image for every scenario: the list cannot be ordered
        assert torch.equal(shared[0, 0], shared[0, 2])


def test_scoring_model_scores_and_modality_logits(lora_backbone):
    model = ScoringModel(lora_backbone, head_hidden=32, modality_head=True).eval()
    batch = _batch()
    with torch.no_grad():
        scores, logits = model(batch)
    assert scores.shape == (3, 3) and logits.shape == (3, 3, len(MODALITY_LABELS))
    assert torch.all(scores[~batch.mask] == 0)
    # the image changes the order within a list: the fused pair features interact
    swapped = ListBatch.from_lists([batch.images[1], batch.images[0], batch.images[2]], batch.texts)
    with torch.no_grad():
        other, _ = model(swapped)
    assert not torch.allclose(other[0], scores[0])


def test_an_image_only_model_scores_a_list_once_in_eval_and_each_slot_in_training():
    """``effnet-image`` sees one input per list: in eval its scores (and modality logits) are exactly tied
    within a list, the per-slot values to rounding, zeros in padding; in training each slot keeps its own
    dropout draw. Per slot, copies of one input came out of the batched head up to a last bit apart, and
    the ranking metrics read that noise as an order (a Kendall tau of 0.816 for a model that cannot rank)."""
    torch.manual_seed(0)
    model = ScoringModel(load_backbone("effnet-image", image_size=64), head_hidden=32, modality_head=True).eval()
    batch = _batch()  # lists of 3, 1 and 2 scenarios
    with torch.no_grad():
        scores, logits = model(batch)
        real = model.backbone.encode(batch)[batch.mask]
        per_slot, per_slot_logits = model.scalar_head(real).squeeze(-1), model.modality_head(real)
    assert scores.shape == (3, 3) and logits.shape == (3, 3, len(MODALITY_LABELS))
    for b, n in enumerate(batch.mask.sum(1).tolist()):
        assert torch.equal(scores[b, :n], scores[b, :1].expand(n))
        assert torch.equal(logits[b, :n], logits[b, :1].expand(n, -1))
        assert torch.all(scores[b, n:] == 0) and torch.all(logits[b, n:] == 0)
    torch.testing.assert_close(scores[batch.mask], per_slot)
    torch.testing.assert_close(logits[batch.mask], per_slot_logits)
    assert len({float(s) for s in scores[batch.mask]}) == 3  # the three images still score differently
    model.train()
    trained, _ = model(batch)
    assert trained[0, 0] != trained[0, 1]  # training mode: per slot, with its own dropout mask
    image_only = load_backbone("effnet-image", image_size=64)
    assert apply_lora(image_only, image_only.lora_target_modules).list_constant  # seen through peft's wrapper
    assert not load_backbone("minilm-effnet", image_size=64).list_constant


def test_warm_cache_reports_progress_per_chunk_without_changing_the_features():
    """The feature store's progress bar counts every image passed (cached or not), chunk by chunk, and
    reporting changes neither the chunks nor the cached trunk maps."""
    images = _batch().images * 3  # repeats: found in the cache, still counted
    plain = load_backbone("effnet-image", image_size=64).image.requires_grad_(False)
    plain.warm_cache(images, chunk=2)
    reported: list[int] = []
    watched = load_backbone("effnet-image", image_size=64).image.requires_grad_(False)
    watched.warm_cache(images, chunk=2, on_progress=reported.append)
    assert sum(reported) == len(images) and len(reported) >= 2
    assert plain._cache.keys() == watched._cache.keys()
    assert all(torch.equal(plain._cache[k], watched._cache[k]) for k in plain._cache)
    counted: list[int] = []
    keys, pooled = watched.pooled_in_order(images, on_progress=counted.append)
    assert sum(counted) == len(keys) == len(set(keys)) and pooled.shape[0] == len(keys)


def test_chunks_side_by_side_equal_one_thread_chunk_by_chunk():
    """``workers=2`` (the feature store) computes each chunk in its own one-thread worker: trunk maps,
    pooled vectors and sentence embeddings bit-identical to one thread, chunk after chunk, in the same order."""
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (60 + 7 * i, 64, 3), dtype=np.uint8)) for i in range(7)]
    texts = [f"scenario number {i}: {'returning the lost wallet ' * (i % 3)}" for i in range(9)]
    before = torch.get_num_threads()
    built = {}
    try:
        for workers, threads in ((1, 1), (2, 2)):
            torch.set_num_threads(threads)
            image = load_backbone("effnet-image", image_size=64).image.requires_grad_(False)
            image.warm_cache(images, chunk=2, workers=workers)
            keys, pooled = image.pooled_in_order(images, workers=workers)
            assert torch.get_num_threads() == threads  # the caller's thread count comes back
            text = load_backbone("minilm-text", max_length=12, text_tuned_layers=0).text
            text.warm_cache(texts, chunk=2, workers=workers)
            built[workers] = (image._cache, keys, pooled, text._cache)
    finally:
        torch.set_num_threads(before)
    (maps_1, keys_1, pooled_1, text_1), (maps_2, keys_2, pooled_2, text_2) = built[1], built[2]
    assert list(maps_1) == list(maps_2) and len(maps_1) == len(images)  # same keys, inserted in the same order
    assert all(torch.equal(maps_1[k], maps_2[k]) for k in maps_1)
    assert keys_1 == keys_2 and torch.equal(pooled_1, pooled_2)
    assert list(text_1) == list(text_2) and all(torch.equal(text_1[k], text_2[k]) for k in text_1)


def test_texts_packed_by_length_encode_fewer_tokens_and_the_same_embeddings_to_rounding():
    """``pack_by_length`` (the robustness suite's new texts) chunks texts of like length together, so
    fewer padded tokens are encoded; each embedding is the text-ordered one up to float rounding, and
    the default order (the feature store, training, ``mmscale predict``) is unchanged."""
    short = [f"{word} a cup" for word in ("a", "c", "e", "g")]
    long = [f"{word} the lost wallet to the old man waiting at the bus stop" for word in ("b", "d", "f", "h")]
    texts = short + long  # alphabetically short and long alternate: a text-ordered chunk of 2 pads a short one
    built = {}
    for packed in (False, True):
        tower = load_backbone("minilm-text", max_length=24, text_tuned_layers=0).text
        shapes = []
        encode = tower._encode_frozen
        tower._encode_frozen = lambda tokens: shapes.append(tuple(tokens["input_ids"].shape)) or encode(tokens)
        assert tower.warm_cache(texts, chunk=2, pack_by_length=packed) == len(texts)
        built[packed] = (tower._cache, sum(rows * length for rows, length in shapes))
    (plain, plain_tokens), (packed, packed_tokens) = built[False], built[True]
    assert packed_tokens < 0.75 * plain_tokens
    assert plain.keys() == packed.keys()
    for key in plain:
        torch.testing.assert_close(packed[key], plain[key], rtol=0, atol=1e-5)
