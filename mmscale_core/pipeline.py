"""Pipeline stages that are commands rather than notebooks (``mmscale data``, ``mmscale features``).

The data stage makes ``data/dataset/`` for every profile, so later stages read
one path: the simulator writes it for ``simulate`` profiles; for a real
release (``source: directory``) the directory is validated and linked there.
Beside it, ``data/dataset.digest.json`` (``data.digest``): the one file later
stages list as their dependency instead of the ~9,300-file directory.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from mmscale_core.data import format_summary, load_dataset
from mmscale_core.data.digest import write_digest
from mmscale_core.errors import MmscaleError
from mmscale_core.params import load_profile, require


def prepare_data(profile: dict, out: str | Path) -> Path:
    """Build (simulate) or link (real release) the profile's dataset at ``out``."""
    data = require(profile, "data", f"profiles.{profile['name']}")
    where = f"profiles.{profile['name']}.data"
    source = require(data, "source", where)
    out = Path(out)
    if out.is_symlink() or out.is_file():
        out.unlink()
    elif out.exists():
        shutil.rmtree(out)
    if source == "simulate":
        from mmscale_core.simulator.generate import simulate

        import dataclasses

        from mmscale_core.simulator.params import DEFAULT_PARAMS

        params = DEFAULT_PARAMS
        if data.get("expansion_share") is not None:  # sec 3.2's added scenarios (the expansion/ dataset)
            params = params.with_(expansion=dataclasses.replace(params.expansion,
                                                                image_share=float(data["expansion_share"])))
        simulate(out, n_images=int(require(data, "images", where)), seed=int(data.get("seed", 0)),
                 image_size=int(data.get("image_size", 224)), params=params)
    elif source == "directory":
        real = Path(require(data, "dir", where)).expanduser().resolve()
        load_dataset(real)  # validate before anything depends on it
        out.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(real, out, target_is_directory=True)
    else:
        raise MmscaleError(f"params.yaml: {where}.source must be 'simulate' or 'directory', not {source!r}")
    return out


EMBEDDED_BACKBONES = ("minilm-effnet", "minilm-text", "effnet-image")


def prepare_features(params_file: str | Path, profile: dict, data_dir: str | Path, out: str | Path) -> Path:
    """The profile's feature store (``mmscale_core.models.feature_store``) at ``out``.

    Only the embedded backbones have frozen towers to share; when the training
    matrix and the modality ablation name none (the paper profile's VLMs) ``out`` holds just a note.
    """
    from mmscale_core.io import write_json
    from mmscale_core.params import load_params

    params = load_params(params_file)
    backbones = [*params.get("train_matrix", {}).get("backbone", []),
                 *params.get("modality_ablation", {}).get("backbone", [])]
    training = profile.get("training") or {}
    out = Path(out)
    if not any(name in EMBEDDED_BACKBONES for name in backbones):
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        write_json(out / "unused.json", {"reason": f"no embedded backbone in train_matrix ({backbones})"})
        return out
    from mmscale_core.models.feature_store import build_feature_store

    return build_feature_store(data_dir, out, training.get("backbone_kwargs") or {},
                               int(training.get("max_image_side", 336)))


def _cmd_data(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    profile = load_profile(args.params, args.profile)
    out = prepare_data(profile, args.out)
    print(format_summary(load_dataset(out, decode_images=False).summary()))
    print(f"digest: {write_digest(out)} (what the later stages depend on)")
    print(f"data stage: {time.perf_counter() - started:.1f} s")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    profile = load_profile(args.params, args.profile)
    out = prepare_features(args.params, profile, args.data, args.out)
    print(f"feature store: {out} in {time.perf_counter() - started:.1f} s")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="pipeline stage: make data/dataset for the selected profile")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None, help="override the profile named in params.yaml")
    p.add_argument("--out", default="data/dataset")
    p.set_defaults(func=_cmd_data)

    p = subparsers.add_parser("features", help="pipeline stage: frozen-tower features shared by the training runs")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None, help="override the profile named in params.yaml")
    p.add_argument("--data", default="data/dataset")
    p.add_argument("--out", default="data/features")
    p.set_defaults(func=_cmd_features)
