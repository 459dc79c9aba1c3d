"""The README's code, run as a newcomer would: in a fresh interpreter, on a tiny run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


from mmscale_core.training import train

from test_training import make_tiny_dataset, tiny_config  # noqa: E402  (tests/ is on sys.path)

REPO = Path(__file__).resolve().parents[1]


def readme_snippet(name: str) -> str:
    match = re.search(rf"<!-- snippet: {name} -->\n```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert match, f"README.md: no python block after <!-- snippet: {name} -->"
    return match.group(1)


def fresh_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


def test_import_mmscale_core_makes_torchvision_users_importable(tmp_path):
    """One fresh interpreter (each costs seconds): the first import goes through the hook."""
    code = ("import sys, mmscale_core\nassert 'torch' not in sys.modules\n"
            "import torchvision\nimport timm\nfrom peft import PeftModel\nprint('ok')")
    done = fresh_python(code, tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_adapter_snippet_loads_a_tiny_lora_run(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", n_images=6)
    run = train(tiny_config(data, tmp_path / "runs" / "modality_head" / "lora", epochs=1, tuning="lora"),
                progress=False)
    assert (run / "adapter").is_dir()
    done = fresh_python(readme_snippet("load-adapter"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    match = re.search(r": (\d+) LoRA weights loaded", done.stdout)
    assert match and int(match.group(1)) > 0, done.stdout
