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


# ----- the server client against a stub on loopback ------------------------------------------------
def _client(url, **kwargs) -> ServerJudge:
    kwargs = {"timeout": 2.0, "retries": 2, "backoff": 0.0, **kwargs}
    return ServerJudge(url, "stub-model", **kwargs)


def test_server_request_shape_and_api_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    with StubServer(lambda n, body: completion("Rating: 4")) as stub:
        judge = _client(stub.url)
        assert judge.complete("the prompt", "data:image/jpeg;base64,AAAA") == ("Rating: 4", None)
        judge.close()
        monkeypatch.delenv("OPENAI_API_KEY")
        judge = _client(stub.url)
        judge.complete("p", "data:image/jpeg;base64,AAAA")
        judge.close()
    body = stub.requests[0]
    assert body["model"] == "stub-model" and body["temperature"] == 0
    (message,) = body["messages"]
    assert message["role"] == "user"
    assert message["content"][0] == {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}}
    assert message["content"][1] == {"type": "text", "text": "the prompt"}
    assert stub.headers[0]["Authorization"] == "Bearer sk-test-123"
    assert "Authorization" not in stub.headers[1]


def test_server_retries_5xx_then_answers():
    with StubServer(lambda n, body: (500, {}, b"overloaded", 0.0) if n < 2 else completion("3")) as stub:
        raw, error = _client(stub.url).complete("p", "u")
    assert (raw, error) == ("3", None) and len(stub.requests) == 3


def test_server_honours_retry_after_on_429():
    waits = []
    respond = lambda n, body: (429, {"Retry-After": "7"}, b"slow down", 0.0) if n == 0 else completion("2")
    with StubServer(respond) as stub:
        raw, error = _client(stub.url, backoff=0.5).complete("p", "u", sleep=waits.append)
    assert (raw, error) == ("2", None) and waits == [7.0]


def test_server_backoff_doubles_and_the_row_gets_an_error_after_the_last_retry():
    waits = []
    with StubServer(lambda n, body: (503, {}, b"down", 0.0)) as stub:
        raw, error = _client(stub.url, retries=3, backoff=0.5).complete("p", "u", sleep=waits.append)
    assert raw == "" and "HTTP 503" in error and "after 4 attempts" in error
    assert waits == [0.5, 1.0, 2.0] and len(stub.requests) == 4


def test_server_stall_is_a_timeout_error():
    with StubServer(lambda n, body: (*completion("3")[:3], 1.5)) as stub:
        raw, error = _client(stub.url, timeout=0.3, retries=1).complete("p", "u", sleep=lambda s: None)
    assert raw == "" and "timeout" in error and len(stub.requests) == 2


@pytest.mark.parametrize("status, body, message", [
    (200, b"<html>not json</html>", "unexpected response"),
    (200, b'{"choices": []}', "no choices[0].message.content"),
    (400, b'{"error": "unknown model"}', "HTTP 400"),
])
def test_server_garbage_and_client_errors_are_not_retried(status, body, message):
    with StubServer(lambda n, _: (status, {}, body, 0.0)) as stub:
        raw, error = _client(stub.url).complete("p", "u")
    assert raw == "" and message in error and len(stub.requests) == 1


def test_a_closed_port_is_a_connection_error():
    with StubServer(lambda n, body: completion("3")) as stub:
        url = stub.url
    raw, error = _client(url, retries=1).complete("p", "u", sleep=lambda s: None)
    assert raw == "" and "connection error" in error


# ----- the resumable output ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("judges") / "data", n_images=8, size=40)


def _rows(data):
    from mmscale_core.data import load_dataset

    return runner.split_rows(load_dataset(data).scenarios, "test")


def _fake_results(fail_at=None, errors=()):
    def results(todo):
        for i, row in enumerate(todo.itertuples()):
            if i == fail_at:
                raise KeyboardInterrupt  # the kill
            if row.scenario_id in errors:
                yield row, {"raw_output": "", "error": "HTTP 503", "prediction": None}
            else:
                yield row, {"raw_output": f"Rating: {len(row.scenario) % 5 + 1}", "error": None,
                            "prediction": float(len(row.scenario) % 5 + 1)}
    return results


META = {"model_id": "fake", "provider": "test", "prompt_type": "zero_shot"}


def test_resume_after_a_kill_torn_line_and_errors(data, tmp_path):
    rows = _rows(data)
    assert len(rows) >= 6
    whole = tmp_path / "whole.jsonl"
    runner.run_rows(rows, _fake_results(), whole, META, progress=False)
    expected = [json.loads(line) for line in whole.read_text().splitlines()]
    assert [tuple(r) for r in expected] == [UPSTREAM_FIELDS] * len(rows)

    out = tmp_path / "killed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        runner.run_rows(rows, _fake_results(fail_at=4), out, META, progress=False)
    assert len(out.read_text().splitlines()) == 4  # flushed row by row
    with open(out, "a") as fh:
        fh.write('{"image_id": "img0')  # killed in the middle of a write
    second = rows["scenario_id"].iloc[5]
    summary = runner.run_rows(rows, _fake_results(errors={second}), out, META, progress=False)
    assert (summary.skipped, summary.written, summary.errors) == (4, len(rows) - 4, 1)
    summary = runner.run_rows(rows, _fake_results(), out, META, progress=False)  # the errored row is asked again
    assert (summary.skipped, summary.written, summary.errors) == (len(rows) - 1, 1, 0)
    got = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["scenario_id"])
    assert got == sorted(expected, key=lambda r: r["scenario_id"])


def test_resume_refuses_a_file_it_did_not_write(data, tmp_path):
    out = tmp_path / "other.jsonl"
    out.write_text("not json\n{}\n")
    with pytest.raises(MmscaleError, match="line 1 is not valid JSON"):
        runner.run_rows(_rows(data), _fake_results(), out, META, progress=False)


def test_concurrency_is_bounded(data):
    import time as _time

    def ask(row):
        _time.sleep(0.02)
        return {"raw_output": "3", "error": None, "prediction": 3.0}

    with StubServer(lambda n, body: (*completion("3")[:3], 0.05)) as stub:
        judge = _client(stub.url)
        rows = _rows(data)
        got = list(runner.concurrent_results(lambda row: dict(zip(("raw_output", "error"),
                                                                  judge.complete("p", "u"))), 3)(rows))
        judge.close()
    assert len(got) == len(rows) and stub.max_in_flight <= 3 and stub.max_in_flight >= 2


# ----- expected rating: packed == pair by pair on every tiny VLM ------------------------------------
@pytest.mark.parametrize("name", ["qwen2-vl", "llava-onevision", "instructblip", "phi-3-vision"])
def test_packed_expected_ratings_equal_the_per_pair_ones(name):
    from PIL import Image

    from mmscale_core.judges.local import LocalJudge
    from mmscale_core.models.tiny import tiny_backbone

    template = prompts.load_template("icl3")
    block = "Action: sharing food\nRating: 5\n\nAction: stealing a wallet\nRating: 1"
    judge = LocalJudge(tiny_backbone(name, prompt=template.around_scenario(block)[0]), template, block)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8))
    scenarios = ["helping a stranger carry heavy bags up the stairs", "stealing a wallet", "shouting at a child"]
    packed = [r["prediction"] for r in judge.expected(image, scenarios)]
    single = [r["prediction"] for r in judge.expected_per_pair(image, scenarios)]
    np.testing.assert_allclose(packed, single, rtol=0, atol=1e-5)
    assert all(1 <= p <= 5 for p in packed) and len(set(np.round(packed, 4))) == 3  # not a constant
    # a different image changes the ratings: the image reaches the answer position
    other = [r["prediction"] for r in judge.expected(Image.new("RGB", (40, 40), (0, 0, 255)), scenarios)]
    assert not np.allclose(packed, other, atol=1e-4)


# ----- the CLI end to end: a checkpoint directory, a server; mmscale evaluate reads the output ----
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from mmscale_core.judges.local import save_tiny_qwen2_vl

    return Path(save_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-judge") / "qwen2-vl"))


def _evaluate(data, out, capsys) -> str:
    capsys.readouterr()
    assert cli_main(["evaluate", "--data", str(data), "--predictions", str(out), "--n-boot", "20"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("scoring", ["expected", "generate"])
def test_judge_a_local_checkpoint_and_evaluate(scoring, data, checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "pred.jsonl"
    args = ["judge", "--data", str(data), "--backbone", "qwen2-vl", "--backbone-arg", f"path={checkpoint}",
            "--prompt", "zero_shot", "--scoring", scoring, "--out", str(out), "--no-progress",
            "--max-new-tokens", "4"]
    assert cli_main([*args, "--limit", "3"]) == 0
    assert len(out.read_text().splitlines()) == 3
    assert cli_main(args) == 0  # resumes
    assert "3 already done" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(_rows(data)) and len({r["scenario_id"] for r in rows}) == len(rows)
    assert {r["provider"] for r in rows} == {f"local-{scoring}"} and rows[0]["model_id"] == str(checkpoint.resolve())
    if scoring == "expected":
        assert all(1 <= r["prediction"] <= 5 for r in rows)
        assert set(json.loads(rows[0]["raw_output"])) == {"1", "2", "3", "4", "5"}
        assert "Pairwise accuracy" in _evaluate(data, out, capsys)
    else:  # a random model answers noise: parse failures, recorded, never a crash
        assert all(isinstance(r["raw_output"], str) and r["error"] is None for r in rows)
        assert all(r["prediction"] == parse_rating(r["raw_output"]) for r in rows)


def test_judge_a_server_and_evaluate(data, tmp_path, capsys):
    def respond(n, body):
        text = body["messages"][0]["content"][1]["text"].split("Action: ")[-1]  # after the exemplars
        if "stealing" in text:
            return 500, {}, b"boom", 0.0  # this scenario's rows end in an error
        if "littering" in text:
            return completion("I cannot say.")  # a parse failure
        return completion(f"Reasoning: ...\nRating: {1 + len(text) % 5}")

    out = tmp_path / "server.jsonl"
    with StubServer(respond) as stub:
        assert cli_main(["judge", "--data", str(data), "--server", stub.url, "--model", "stub-model", "--prompt",
                         "icl3", "--out", str(out), "--no-progress", "--retries", "1", "--concurrency", "2"]) == 0
    assert stub.max_in_flight <= 2
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    errors = [r for r in rows if r["error"]]
    unparsed = [r for r in rows if not r["error"] and r["prediction"] is None]
    assert errors and all("stealing" in r["text"] and "HTTP 500" in r["error"] for r in errors)
    assert unparsed and all("littering" in r["text"] for r in unparsed)
    assert f"{len(unparsed)} answer(s) without a rating, {len(errors)} error(s)" in printed
    assert "Action: " in stub.requests[0]["messages"][0]["content"][1]["text"]  # the icl3 exemplars
    assert all(r["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
               for r in stub.requests)
    assert "no prediction" in _evaluate(data, out, capsys)


def test_judge_argument_problems_are_one_message(data, tmp_path, capsys):
    base = ["judge", "--data", str(data), "--prompt", "zero_shot", "--out", str(tmp_path / "x.jsonl")]
    assert cli_main(base) == 2
    assert cli_main([*base, "--server", "http://127.0.0.1:9/v1", "--model", "m", "--scoring", "expected"]) == 2
    assert cli_main([*base, "--backbone", "minilm-text"]) == 2
    err = capsys.readouterr().err
    assert "either --backbone" in err and "needs a local" in err and "not a generative VLM" in err
    assert "Traceback" not in err


# ----- Task 3: verify-rationales ---------------------------------------------------------------------
@pytest.mark.parametrize("answer, label, problem", [
    ('{"label": "both", "load_bearing_visual_evidence": ["a knife"], "rationale": "r"}', "both", None),
    ('Sure!\n```json\n{"label": "Text-Grounded", "load_bearing_text_evidence": "steals"}\n```', "text-grounded", None),
    ('{"label": "image-grounded"} and more text {"x": 1}', "image-grounded", None),
    ('{"label": "visual"}', None, "is not one of"),
    ('{"label": "both", "load_bearing_visual_evidence": 3}', None, "not a list"),
    ('{"label": "both",', None, "not valid"),
    ("I think it is text-grounded.", None, "no JSON object"),
    ("", None, "empty answer"),
])
def test_parse_verdict(answer, label, problem):
    from mmscale_core.judges.verifier import verdict

    got = verdict(answer, None)
    assert got["label"] == label and (problem is None) == (got["parse_error"] is None)
    if problem:
        assert problem in got["parse_error"] and got["raw_judge_output"] == answer


def test_verify_rationales_through_a_server_and_evaluate(data, tmp_path, capsys):
    rows = _rows(data)
    cot = tmp_path / "cot.jsonl"
    with open(cot, "w") as fh:
        for i, row in enumerate(rows.itertuples()):
            fh.write(json.dumps({"scenario_id": row.scenario_id, "model_id": "m", "prompt_type": "cot",
                                 "raw_output": "" if i == 0 else f"<think>it looks red</think>Rating: 3",
                                 "prediction": None if i == 0 else 3.0}) + "\n")
    answers = ['{"label": "image-grounded", "load_bearing_visual_evidence": ["red"]}', "not json",
               '{"label": "text-grounded"}']
    with StubServer(lambda n, body: completion(answers[n % 3])) as stub:
        out = tmp_path / "judged.jsonl"
        args = ["verify-rationales", "--predictions", str(cot), "--data", str(data), "--server", stub.url,
                "--model", "judge", "--out", str(out), "--no-progress", "--concurrency", "1"]
        assert cli_main([*args, "--limit", "2"]) == 0
        assert cli_main(args) == 0
    assert "it looks red" in stub.requests[0]["messages"][0]["content"][1]["text"]
    assert "</think>" not in stub.requests[0]["messages"][0]["content"][1]["text"]
    judged = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(judged) == len(rows) - 1 == len(stub.requests)  # the row without a rationale is not sent
    unparsed = [r for r in judged if r["label"] is None]
    assert len(unparsed) == sum(n % 3 == 1 for n in range(len(stub.requests)))
    assert all(r["parse_error"] == "no JSON object in the answer" and r["raw_judge_output"] == "not json"
               for r in unparsed)
    capsys.readouterr()
    assert cli_main(["evaluate", "--data", str(data), "--predictions", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "Cohen's kappa" in printed and "by human modality" in printed


def test_rationale_agreement_against_sklearn_by_hand():
    from sklearn.metrics import f1_score

    from mmscale_core.judges.verifier import rationale_report

    human = ["text", "text", "image", "both", "image", "text"]
    labels = ["text-grounded", "image-grounded", "image-grounded", "both", "ungrounded", "text-grounded"]
    scenarios = pd.DataFrame({"scenario_id": [f"s{i}" for i in range(6)], "modality": human})
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j.jsonl"
        path.write_text("".join(json.dumps({"scenario_id": f"s{i}", "label": lab, "raw_judge_output": "x",
                                            "error": None}) + "\n" for i, lab in enumerate(labels)))
        report = rationale_report(path, scenarios)
    # by hand: text P=1 R=2/3, image P=1/2 R=1/2, both P=1 R=1
    f1_text, f1_image, f1_both = 2 * (2 / 3) / (1 + 2 / 3), 0.5, 1.0
    assert report.macro_f1 == pytest.approx((f1_text + f1_image + f1_both) / 3)
    assert report.macro_f1 == pytest.approx(f1_score(human, ["text", "image", "image", "both", "ungrounded", "text"],
                                                     labels=["text", "image", "both"], average="macro"))
    assert report.by_modality.loc["text", "agreement"] == pytest.approx(2 / 3)
    assert report.distribution.set_index("label").loc["image-grounded", "n"] == 2
