"""A feature store: the embedded towers' frozen outputs, computed once per dataset and shared by every run.

Why: the pipeline trains 20-odd runs on the same data. With the text tower
frozen (``text_tuned_layers: 0``) and the image tower's trunk frozen
(everything before its ``tuned_stages`` LoRA-tuned stages), each run would
otherwise recompute the same sentence embeddings (32k scenarios) and trunk
features (9k images) before its first step and again to predict. The store
holds both, keyed by content (a hash of the text; a hash of the image
file's bytes and the resize cap, the towers' own cache keys), so filling a tower's cache from it
gives exactly the values the tower would compute itself (same sorted order,
same fixed chunks) and a run is bit-identical with or without the store when
it uses one torch thread, as the profiles do: the store computes its chunks side
by side, one torch thread each (the stage gets every core), because convolution
kernels can round differently per thread count (~1e-5; on our machine a chunk of
12 images did, chunks of 32 did not). ``pooled.safetensors`` holds a frozen
tail's pooled output (``tuning: frozen``) of every image with scenarios, in the
fixed chunks a run computes them in; a run takes it only when it would compute
exactly those images in that order (a chunk of another size rounds differently).

Layout (one directory, written atomically): ``spec.json`` (what it was
computed with, checked against the run's backbone), ``text.safetensors``
(``keys`` (N, 16) uint8, ``values`` (N, 384)) and ``image.safetensors`` (the
same for trunk maps), ``pooled.safetensors`` (the same for a frozen tail's pooled
outputs, in the runs' order). Backbones without cacheable towers (the VLMs) ignore it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mmscale_core.errors import MmscaleError

SPEC_FILE = "spec.json"
TEXT_FILE = "text.safetensors"
IMAGE_FILE = "image.safetensors"
POOLED_FILE = "pooled.safetensors"  # optional: stores built before it lack it and work as before
FORMAT_VERSION = 1


def store_spec(backbone_kwargs: dict[str, Any], max_image_side: int) -> dict[str, Any]:
    """The settings that change the stored values (defaults are the embedded factories')."""
    return {
        "version": FORMAT_VERSION,
        "image_size": int(backbone_kwargs.get("image_size", 224)),
        "tuned_stages": int(backbone_kwargs.get("tuned_stages", 2)),
        "max_length": int(backbone_kwargs.get("max_length", 32)),
        "max_image_side": int(max_image_side),
    }


def _pack(cache: dict[bytes, torch.Tensor]) -> dict[str, torch.Tensor]:
    keys = sorted(cache)
    return {
        "keys": torch.tensor([list(k) for k in keys], dtype=torch.uint8).reshape(len(keys), -1),
        "values": torch.stack([cache[k].squeeze(0) if cache[k].dim() == 4 else cache[k] for k in keys])
        if keys else torch.zeros(0),
    }


def _unpack(tensors: dict[str, torch.Tensor], batch_dim: bool) -> dict[bytes, torch.Tensor]:
    values = tensors["values"]
    return {bytes(k.tolist()): (v.unsqueeze(0) if batch_dim else v)
            for k, v in zip(tensors["keys"], values)}


def build_feature_store(data_dir: str | os.PathLike, out: str | os.PathLike, backbone_kwargs: dict[str, Any],
                        max_image_side: int = 336, progress: bool = True) -> Path:
    """Compute every scenario's sentence embedding and every image's trunk map of ``data_dir`` into ``out``."""
    from safetensors.torch import save_file

    from mmscale_core.data import ImageLoader, dataset_fingerprint, load_dataset
    from mmscale_core.io import replace_dir, write_json
    from mmscale_core.models.embedded import EfficientNetTower, MiniLMTower

    spec = store_spec(backbone_kwargs, max_image_side)
    dataset = load_dataset(data_dir)
    texts = sorted(set(dataset.scenarios["scenario"]))
    workers = torch.get_num_threads()  # side by side, one thread each: the same values, ~1.4x sooner
    text = MiniLMTower(spec["max_length"], tuned_layers=0)
    with tqdm(total=len(texts), desc="text features", unit="text", disable=not progress) as bar:
        text.warm_cache(texts, workers=workers, on_progress=bar.update)
    image = EfficientNetTower(spec["image_size"], spec["tuned_stages"], cache_mb=1e9)
    loader = ImageLoader(dataset, spec["max_image_side"], lazy=True)  # keyed by file content, as in the runs
    ids = sorted(dataset.images)
    with tqdm(total=len(ids), desc="image trunk maps", unit="img", disable=not progress) as bar:
        image.warm_cache((loader(i) for i in ids), on_progress=bar.update, workers=workers)
    # a frozen tail's pooled output (``tuning: frozen``) for the images the runs predict: every image with
    # scenarios, in the runs' order, so a run over all of them takes these instead of computing them
    with_scenarios = sorted(set(dataset.scenarios["image_id"]))
    with tqdm(total=len(with_scenarios), desc="pooled image vectors", unit="img", disable=not progress) as bar:
        pooled_keys, pooled = image.pooled_in_order([loader(i) for i in with_scenarios], on_progress=bar.update,
                                                   workers=workers)

    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(_pack(text._cache), str(tmp / TEXT_FILE))
    save_file({k: v.contiguous() for k, v in _pack(image._cache).items()}, str(tmp / IMAGE_FILE))
    save_file({"keys": torch.tensor([list(k) for k in pooled_keys], dtype=torch.uint8).reshape(len(pooled_keys), -1),
               "values": pooled.contiguous()}, str(tmp / POOLED_FILE))
    write_json(tmp / SPEC_FILE, {**spec, "dataset_hash": dataset_fingerprint(dataset),
                                 "n_texts": len(text._cache), "n_images": len(image._cache)})
    replace_dir(tmp, out)
    return out


def read_spec(store: str | os.PathLike) -> dict[str, Any]:
    path = Path(store) / SPEC_FILE
    if not path.is_file():
        raise MmscaleError(f"{store}: not a feature store (no {SPEC_FILE}; build it with: mmscale features)")
    return json.loads(path.read_text(encoding="utf-8"))


def load_feature_store(store: str | os.PathLike, backbone, backbone_kwargs: dict[str, Any],
                       max_image_side: int) -> dict[str, int]:
    """Fill ``backbone``'s frozen-tower caches from ``store``; returns how many entries each took.

    A store computed with other settings would silently change the features, so
    a mismatch is an error naming the setting. A tower that is not frozen
    (LoRA on the text layers) takes nothing: its outputs are not cacheable.
    """
    from safetensors.torch import load_file

    spec = read_spec(store)
    wanted = store_spec(backbone_kwargs, max_image_side)
    diff = [f"{k}: store {spec.get(k)!r}, run {v!r}" for k, v in wanted.items() if spec.get(k) != v]
    if diff:
        raise MmscaleError(f"{store}: feature store built with other settings ({'; '.join(diff)}); "
                           f"rebuild it with: mmscale features")
    loaded = {"texts": 0, "images": 0}
    text, image = getattr(backbone, "text", None), getattr(backbone, "image", None)
    if text is not None and text._is_frozen:
        text._cache.update(_unpack(load_file(str(Path(store) / TEXT_FILE)), batch_dim=False))
        loaded["texts"] = len(text._cache)
    if image is not None and image._trunk_is_frozen:
        entries = _unpack(load_file(str(Path(store) / IMAGE_FILE)), batch_dim=True)
        for key, value in entries.items():
            image._remember(key, value)
        loaded["images"] = len(entries)
        if (Path(store) / POOLED_FILE).is_file():  # used only by a frozen tail, for the same images in the same order
            pooled = load_file(str(Path(store) / POOLED_FILE))
            image.stored_pooled = ([bytes(k.tolist()) for k in pooled["keys"]], pooled["values"])
    return loaded
