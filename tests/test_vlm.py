"""The real-VLM backbones on tiny random-init configs: shared prefix == naive, LoRA, offline loading."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from mmscale_core.cli import main as cli_main
from mmscale_core.errors import MmscaleError
from mmscale_core.models import load_backbone
from mmscale_core.models.base import ListBatch
from mmscale_core.models.tiny import TINY_BUILDERS, tiny_backbone, tiny_qwen2_vl  # applies the torchvision shim
from mmscale_core.models.lora import PAPER_LORA, apply_lora  # isort: skip  (peft imports transformers)
import mmscale_core.models.vlm.backbone as vlm_backbone  # isort: skip
import mmscale_core.models.vlm.packing as vlm_packing  # isort: skip
from mmscale_core.models.vlm.packing import block_mask, pack_lists
from peft import PeftModel  # isort: skip

NAMES = sorted(TINY_BUILDERS)
REL_TOL = 1e-5  # the real error is ~1e-6 at the tiny models' weight scale (tiny.INIT_STD)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _image(seed: int, width: int, height: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def batch() -> ListBatch:
    """Two lists with different image sizes (different prefix lengths) and list sizes (padding)."""
    return ListBatch.from_lists(
        [_image(0, 84, 56), _image(1, 56, 112)],
        [["A man helps an old lady carry her bags.", "He steals her purse.", "He walks past her."],
         ["Children play football in the yard.", "They break the window and run away."]],
    )


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _with_random_lora(name: str, seed: int = 1):
    """Tiny backbone + paper LoRA with random (non-zero) adapter weights, in eval mode (dropout off)."""
    backbone = tiny_backbone(name)
    backbone = apply_lora(backbone, backbone.lora_target_modules)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, param in backbone.named_parameters():
            if "lora_" in pname:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return backbone.eval()


@pytest.mark.parametrize("name", NAMES)
def test_encode_shapes_padding_and_equality_with_naive(name, batch):
    backbone = tiny_backbone(name).eval()
    with torch.no_grad():
        shared, naive = backbone.encode(batch), backbone.encode_naive(batch)
    assert shared.shape == (2, 3, backbone.hidden_size) == naive.shape
    assert backbone.hidden_size == 64
    assert torch.isfinite(shared).all()
    assert (shared[1, 2] == 0).all() and (naive[1, 2] == 0).all()  # padded slot
    assert shared[0, 0].abs().sum() > 0
    assert not torch.allclose(shared[0, 0], shared[0, 1])  # the scenario matters
    assert _rel(shared, naive) <= REL_TOL


def _mutated_pack(kind: str):
    """``pack_lists`` with one deliberate bug, to show the shared-vs-naive comparison catches it."""
    original = vlm_backbone.pack_lists

    def pack(prefix_embeds, prefix_positions, scenario_embeds):
        packed = original(prefix_embeds, prefix_positions, scenario_embeds)
        if kind == "shift positions":  # every scenario starts one position late
            for b, prefix in enumerate(prefix_embeds):
                packed.position_ids[:, b, prefix.shape[0]:] += 1
        elif kind == "pool wrong token":  # the token before the scoring token
            packed.score_index.sub_(1).clamp_(min=0)
        return packed

    return pack


MUTATIONS = ["shift positions", "leak scenario 1 into 2", "pool wrong token"]


@pytest.mark.parametrize("kind", MUTATIONS)
@pytest.mark.parametrize("name", NAMES)
def test_the_comparison_with_naive_catches_packing_bugs(name, kind, batch, monkeypatch):
    backbone = tiny_backbone(name).eval()
    with torch.no_grad():
        naive = backbone.encode_naive(batch)
        if kind == "leak scenario 1 into 2":  # scenario 2's tokens may attend to scenario 1's
            block = vlm_packing.block_mask
            monkeypatch.setattr(vlm_packing, "block_mask",
                                lambda segment, dtype: block(torch.where(segment == 2, 1, segment), dtype))
        else:
            monkeypatch.setattr(vlm_backbone, "pack_lists", _mutated_pack(kind))
        mutated = backbone.encode(batch)
    assert _rel(mutated, naive) > 100 * REL_TOL


@pytest.mark.parametrize("name", NAMES)
def test_a_different_image_changes_the_features(name, batch):
    backbone = tiny_backbone(name).eval()
    other = ListBatch.from_lists([_image(5, 84, 56), batch.images[1]], batch.texts)
    with torch.no_grad():
        same, changed = backbone.encode(batch), backbone.encode(other)
    assert _rel(changed[0], same[0]) > 1e-2  # the image of list 0 changed
    torch.testing.assert_close(changed[1], same[1], rtol=0, atol=1e-6)  # list 1 did not


@pytest.mark.parametrize("name", NAMES)
def test_flash_attention_is_refused_with_a_clear_message(name, tmp_path):
    with pytest.raises(MmscaleError, match="flash_attention_2.*4-D block mask.*sdpa, eager"):
        load_backbone(name, path=tmp_path, attn_implementation="flash_attention_2")
    model, processor = TINY_BUILDERS[name]()
    model.set_attn_implementation("eager")  # a model object configured elsewhere is checked too
    load_backbone(name, model=model, processor=processor)
    model.config._attn_implementation = "flash_attention_2"
    for sub in model.modules():
        if hasattr(sub, "config") and hasattr(sub.config, "_attn_implementation"):
            sub.config._attn_implementation = "flash_attention_2"
    with pytest.raises(MmscaleError, match="flash_attention_2"):
        load_backbone(name, model=model, processor=processor)


@pytest.mark.parametrize("name", NAMES)
def test_lora_gradients_equal_naive(name, batch):
    backbone = _with_random_lora(name)
    projection = torch.randn(backbone.hidden_size, generator=torch.Generator().manual_seed(2))
    grads = []
    for encode in (backbone.encode, backbone.encode_naive):
        backbone.zero_grad(set_to_none=True)
        (encode(batch) @ projection).sum().backward()
        grads.append({n: p.grad.clone() for n, p in backbone.named_parameters() if p.grad is not None})
    shared, naive = grads
    assert shared.keys() == naive.keys()
    assert any("language_model" in n or ".layers." in n for n in naive)  # the decoder's LoRA is trained
    assert all("lora_" in n for n in naive)  # nothing but the adapters gets gradients
    for pname, grad in naive.items():
        assert grad.norm() > 0, pname
        assert float((shared[pname] - grad).norm() / grad.norm()) <= REL_TOL, pname


@pytest.mark.parametrize("name", NAMES)
def test_lora_adapter_save_load_round_trip(name, batch, tmp_path):
    backbone = _with_random_lora(name, seed=3)
    with torch.no_grad():
        before = backbone.encode(batch)
    backbone.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert {k: saved[k] for k in ("r", "lora_alpha", "lora_dropout", "bias")} == PAPER_LORA
    reloaded = PeftModel.from_pretrained(tiny_backbone(name), tmp_path).eval()
    with torch.no_grad():
        after = reloaded.encode(batch)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_lora_targets_cover_decoder_attention(name):
    backbone = tiny_backbone(name)
    peft_model = apply_lora(backbone, backbone.lora_target_modules)
    adapted = [n for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and len(m.lora_A)]
    decoder_layer = [n for n in adapted if ".layers.0.self_attn." in n and "vision" not in n
                     and "img_processor" not in n]
    fused = name == "phi-3-vision"  # Phi decoders fuse q, k, v into one qkv_proj
    expected = {"qkv_proj", "o_proj"} if fused else {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert {n.rsplit(".", 1)[1] for n in decoder_layer} == expected
    assert not any("audio" in n for n in adapted)
    if not fused:
        assert backbone.lora_target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]


def test_images_are_resized_to_at_most_336_and_factory_kwargs_apply():
    backbone = tiny_backbone("qwen2-vl")
    prepared = backbone.prepare(ListBatch.from_lists([_image(0, 1000, 700)], [["A scenario."]]))
    grid = prepared.prefixes[0].inputs["image_grid_thw"][0]
    assert int(grid[1]) * 14 <= 336 and int(grid[2]) * 14 <= 336
    n_image = int((prepared.prefixes[0].input_ids == backbone.image_token_id).sum())
    assert n_image == int(grid.prod()) // 4 <= 144

    # image_size / max_length, as the training config's backbone_kwargs pass them
    small = load_backbone("qwen2-vl", model=backbone.model, processor=backbone.processor, image_size=112,
                          max_length=2)
    scenario = "A long scenario with many words in it."
    prepared = small.prepare(ListBatch.from_lists([_image(0, 1000, 700)], [[scenario]]))
    grid = prepared.prefixes[0].inputs["image_grid_thw"][0]
    assert int(grid[1]) * 14 <= 112 and int(grid[2]) * 14 <= 112
    tail = small.processor.tokenizer(small.answer_tail, add_special_tokens=False)["input_ids"]
    assert prepared.suffix_ids[0][0].tolist()[2:] == tail and len(prepared.suffix_ids[0][0]) == 2 + len(tail)


def test_vlm_backbones_take_keyed_images_as_the_robustness_suite_passes_them(tmp_path):
    """A dataset image not decoded yet (``KeyedImage``), or a perturbed copy held with its key,
    prepares exactly as the PIL image it stands for (before, ``prepare`` failed on both)."""
    from mmscale_core.models.base import KeyedImage

    backbone = tiny_backbone("qwen2-vl")
    path = tmp_path / "scene.png"
    _image(0, 500, 350).save(path)
    on_disk = KeyedImage(path)
    for handle in (on_disk, KeyedImage.holding(on_disk.load())):
        got = backbone.prepare(ListBatch.from_lists([handle], [["A scenario."]])).prefixes[0]
        want = backbone.prepare(ListBatch.from_lists([on_disk.load()], [["A scenario."]])).prefixes[0]
        assert torch.equal(got.input_ids, want.input_ids)
        assert torch.equal(got.inputs["pixel_values"], want.inputs["pixel_values"])


def test_qwen2_vl_packed_positions_match_the_models_own_rope_index():
    """M-RoPE: each scenario resumes where the naive sequence's text after the image resumes."""
    backbone = tiny_backbone("qwen2-vl")
    prepared = backbone.prepare(ListBatch.from_lists([_image(0, 112, 84)], [["One.", "Two words here."]]))
    prefix, suffixes = prepared.prefixes[0], prepared.suffix_ids[0]
    prefix_pos = backbone._prefix_positions(prefix)
    embeds = [torch.zeros(prefix.input_ids.numel(), 4)], [[torch.zeros(s.numel(), 4) for s in suffixes]]
    packed = pack_lists(embeds[0], [prefix_pos], embeds[1])
    offset = prefix.input_ids.numel()
    for suffix in suffixes:
        full = torch.cat([prefix.input_ids, suffix])
        types = torch.cat([prefix.inputs["mm_token_type_ids"][0], torch.zeros_like(suffix)])
        naive, _ = backbone.model.model.get_rope_index(full[None], mm_token_type_ids=types[None],
                                                       image_grid_thw=prefix.inputs["image_grid_thw"])
        n = suffix.numel()
        assert torch.equal(packed.position_ids[:, 0, offset:offset + n], naive[:, 0, -n:])
        assert torch.equal(packed.position_ids[:, 0, :prefix.input_ids.numel()], naive[:, 0, :-n])
        offset += n


def test_block_mask_matches_brute_force():
    segment = torch.tensor([[0, 0, 1, 1, 2, 2, 2, -1], [0, 1, 2, 3, -1, -1, -1, -1]])
    mask = block_mask(segment, torch.float32)[:, 0]
    for b in range(2):
        for q in range(8):
            for k in range(8):
                sq, sk = int(segment[b, q]), int(segment[b, k])
                allowed = (q == k) if sq < 0 or sk < 0 else (k <= q and (sk == 0 or sk == sq))
                assert (mask[b, q, k] == 0) == allowed, (b, q, k)


def test_full_size_qwen2_vl_config_has_the_7b_shape():
    model, _ = tiny_qwen2_vl(full_size=True, device="meta")
    assert sum(p.numel() for p in model.parameters()) == 8_291_375_616  # Qwen2-VL-7B-Instruct


def test_missing_checkpoint_is_one_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MmscaleError) as err:
        load_backbone("qwen2-vl")
    message = str(err.value)
    for needle in ("'qwen2-vl'", "Qwen/Qwen2-VL-7B-Instruct", str(tmp_path / "empty-cache"), "--backbone-path",
                   "backbone_kwargs.qwen2-vl.path", "HF_HOME"):
        assert needle in message
    with pytest.raises(MmscaleError, match=re.escape(str(tmp_path / "nowhere"))):
        load_backbone("instructblip", path=tmp_path / "nowhere")


def test_a_given_path_that_is_no_checkpoint_never_falls_back_to_the_default(tmp_path, monkeypatch):
    """A mistyped path must not silently load the stock model from the cache (issue 19, item 1)."""
    import mmscale_core.models.vlm.checkpoint as checkpoint

    stock = tmp_path / "cache" / "snapshots" / ("a" * 40)
    stock.mkdir(parents=True)
    (stock / "config.json").write_text("{}")
    monkeypatch.setattr(checkpoint, "_from_hf_cache", lambda repo_id: stock)  # the stock model is cached
    assert checkpoint.resolve_checkpoint("qwen2-vl", "Qwen/Qwen2-VL-7B-Instruct") == stock
    empty = tmp_path / "empty"
    empty.mkdir()
    for given, what in ((tmp_path / "no" / "such" / "finetuned-ckpt", "does not exist"),
                        (empty, "has no config.json"), (stock / "config.json", "is not a directory")):
        with pytest.raises(MmscaleError, match=re.escape(f"{given} {what}")):
            checkpoint.resolve_checkpoint("qwen2-vl", "Qwen/Qwen2-VL-7B-Instruct", given)
    # a hub id is looked up as itself, never replaced by the default
    monkeypatch.setattr(checkpoint, "_from_hf_cache", lambda repo_id: None)
    with pytest.raises(MmscaleError, match="no local checkpoint of someone/finetuned"):
        checkpoint.resolve_checkpoint("qwen2-vl", "Qwen/Qwen2-VL-7B-Instruct", "someone/finetuned")


def test_the_checkpoint_record_names_the_commit_or_a_content_fingerprint(tmp_path):
    from mmscale_core.models.vlm.checkpoint import checkpoint_record

    snapshot = tmp_path / "models--x--y" / "snapshots" / ("0123456789" * 4)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"a": 1}')
    record = checkpoint_record(snapshot)
    assert record["path"] == str(snapshot.resolve()) and record["commit"] == "0123456789" * 4
    local = tmp_path / "local"
    local.mkdir()
    (local / "config.json").write_text('{"a": 1}')
    (local / "model.safetensors.index.json").write_text('{"weight_map": {"w": "model-1.safetensors"}}')
    first = checkpoint_record(local)
    assert "commit" not in first and first["fingerprint"].startswith("sha256:")
    assert checkpoint_record(local) == first
    (local / "model.safetensors.index.json").write_text('{"weight_map": {"w": "model-2.safetensors"}}')
    assert checkpoint_record(local)["fingerprint"] != first["fingerprint"]


def test_missing_checkpoint_on_the_cli_has_no_traceback(tmp_path, capsys):
    code = cli_main(["bench", "prefix", "--backbone", "llava-onevision", "--backbone-path",
                     str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code == 2
    assert "llava-onevision" in err and str(tmp_path / "missing") in err and "Traceback" not in err


def test_bench_prefix_prints_both_paths_and_the_ratio(tmp_path, capsys):
    out_json = tmp_path / "bench.json"
    code = cli_main(["bench", "prefix", "--backbone", "qwen2-vl", "--lists", "2", "--warmup", "0",
                     "--repeats", "1", "--image-size", "56", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    assert "naive (paper)" in out and "shared prefix" in out
    assert re.search(r"speed-up .*: \d+\.\d\dx", out)
    result = json.loads(out_json.read_text())
    naive, shared = result["paths"]
    assert result["scenarios"] == 3 + 4
    assert shared["lm_tokens"] < naive["lm_tokens"] and shared["flops"] < naive["flops"]


def test_instructblip_qformer_reads_the_fixed_instruction_and_the_pages_say_so(batch):
    """Not the paper's InstructBLIP: its Q-Former gets the instruction alone, which moves the features."""
    from pathlib import Path

    backbone = tiny_backbone("instructblip").eval()
    fixed = backbone.processor.qformer_tokenizer(backbone.prompt, return_tensors="pt")["input_ids"]
    prefix = backbone.prepare(batch).prefixes[0]
    assert torch.equal(prefix.inputs["qformer_input_ids"], fixed)
    with_scenario = backbone.processor.qformer_tokenizer(f"{backbone.prompt} {batch.texts[0][1]}", return_tensors="pt")
    other = vlm_backbone.Prefix(prefix.input_ids, {**prefix.inputs, "qformer_input_ids": with_scenario["input_ids"],
                                                   "qformer_attention_mask": with_scenario["attention_mask"]})
    with torch.no_grad():
        assert _rel(backbone._image_features(other), backbone._image_features(prefix)) > 1e-2

    repo = Path(__file__).resolve().parents[1]
    readme = " ".join((repo / "README.md").read_text(encoding="utf-8").split())
    notebook = json.loads((repo / "notebooks" / "04_table3.ipynb").read_text(encoding="utf-8"))
    intro = "".join(notebook["cells"][0]["source"])
    for text in (readme, intro):
        assert "not the paper's rows" in text and "Q-Former reads the fixed instruction" in text
        assert "Phi-4-multimodal" in text
