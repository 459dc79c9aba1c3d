"""Prompted judges (issue 22): answer parsing, prompts, the resumable output, the server client
against a stub on loopback, the expected rating packed vs pair by pair, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from judge_stub import StubServer, completion  # noqa: E402  (tests/ is on sys.path)
from test_training import make_tiny_dataset  # noqa: E402

from mmscale_core.cli import main as cli_main  # noqa: E402
from mmscale_core.errors import MmscaleError  # noqa: E402
from mmscale_core.judges import prompts, runner  # noqa: E402
from mmscale_core.judges.parsing import parse_rating  # noqa: E402
from mmscale_core.judges.server import ServerJudge  # noqa: E402
from mmscale_core.upstream_predictions import UPSTREAM_FIELDS  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NO_SLEEP = staticmethod(lambda seconds: None)


# ----- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, expected", [
    ("4", 4.0), ("5\n", 5.0), ("Rating: 2", 2.0), ("rating:3", 3.0), ("RATING : 1", 1.0), ("Final rating: 4", 4.0),
    ("Reasoning: three people are hurt.\nRating: 2", 2.0),  # a number in the reasoning is not the rating
    ("**Rating:** 4", 4.0), ("**4**", 4.0), ("## Rating: 5", 5.0), ("`3`", 3.0),
    ("Rating: 4.", 4.0), ("Rating: [4]", 4.0), ("Rating: 4 (mostly fine)", 4.0), ("Rating: 3.0", 3.0),
    ("4/5", 4.0), ("Rating: 4 out of 5", 4.0), ("rating：2", 2.0),  # full-width colon
    ("Rating: 3\nRating: 4", 4.0),  # the last rating line wins
    ("Rating: 4\nI hope this helps!", 4.0),  # a rating line beats the last line
    ("The answer is 3 (neutral).", 3.0), ("I would say 2.", 2.0),
    ("３", 3.0), ("Rating: ٤", 4.0), ("४", 4.0),  # full-width, Arabic-Indic, Devanagari digits
    ("Rating: 6", None), ("0", None), ("-2", None), ("−1", None), ("Rating: 10", None), ("15", None),
    ("3.5", None), ("Rating: 2.5", None), ("3,5", None),
    ("between 2 and 3", None), ("Rating: 2 or 3", None), ("2-3", None), ("1 2 3 4 5", None),
    ("", None), ("   \n\t\n", None), (None, None), ("four", None), ("³", None), ("I cannot answer that.", None),
    ("Rating: 3\n\nThe scale runs from 1 to 5.", 3.0),
    ("I think it is 3.\nBut I am unsure.", None),  # the last line has no rating, and no Rating: line
    ("Rating: 9\n4", 4.0),  # an invalid rating line falls back to the last line
])
def test_parse_rating(answer, expected):
    assert parse_rating(answer) == expected


# ----- prompts -------------------------------------------------------------------------------------
def test_builtin_templates_split_at_the_scenario():
    for prompt_type in prompts.PROMPT_TYPES:
        template = prompts.load_template(prompt_type)
        before, after = template.around_scenario("EXAMPLES")
        assert template.render("kicking a dog", "EXAMPLES") == before + "kicking a dog" + after
        assert ("EXAMPLES" in before) == (prompt_type == "icl3")
    assert "Rating: N" in prompts.load_template("cot").text


@pytest.mark.parametrize("text, prompt_type, message", [
    ("no field at all", "zero_shot", "exactly once"),
    ("{scenario} and {scenario}", "zero_shot", "exactly once"),
    ("{scenario} {rating}", "zero_shot", "unknown template field"),
    ("{scenario}", "icl3", "needs {exemplars_block}"),
    ("{exemplars_block} {scenario}", "cot", "only filled for --prompt icl3"),
    ("{scenario} {", "zero_shot", "not a valid template"),
])
def test_prompt_file_problems_name_the_file(tmp_path, text, prompt_type, message):
    path = tmp_path / "prompt.txt"
    path.write_text(text)
    with pytest.raises(MmscaleError, match=message) as err:
        prompts.load_template(prompt_type, path)
    assert str(path) in str(err.value)


def test_a_prompt_file_is_used_verbatim(tmp_path):
    path = tmp_path / "theirs.txt"
    path.write_text("Examples:\n{exemplars_block}\nAction: {scenario}\nOne number, {{1..5}}.")
    template = prompts.load_template("icl3", path)
    assert template.render("x", "E") == "Examples:\nE\nAction: x\nOne number, {1..5}."


def test_icl3_exemplars_come_from_train_with_a_fixed_seed():
    frame = pd.DataFrame({"scenario_id": [f"s{i:02d}" for i in range(30)], "scenario": [f"a{i}" for i in range(30)],
                          "score": np.linspace(1, 5, 30), "split": ["train"] * 20 + ["test"] * 10})
    first = prompts.sample_exemplars(frame)
    assert len(first) == 3 and set(first["scenario_id"]) <= set(frame["scenario_id"][:20])
    pd.testing.assert_frame_equal(first, prompts.sample_exemplars(frame.sample(frac=1, random_state=1)))
    assert not first.equals(prompts.sample_exemplars(frame, seed=7))
    block = prompts.exemplars_block(first)
    assert block.count("Rating: ") == 3 and all(parse_rating(line) for line in block.splitlines()
                                                if line.startswith("Rating"))
    with pytest.raises(MmscaleError, match="train split"):
        prompts.sample_exemplars(frame.assign(split="test"))
