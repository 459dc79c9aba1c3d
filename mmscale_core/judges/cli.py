"""``mmscale judge`` and ``mmscale verify-rationales``: the benchmark's prompted tasks (issue 22).

    mmscale judge --data DIR [--split test] --prompt zero_shot|icl3|cot [--prompt-file F]
        (--backbone NAME [--backbone-arg path=DIR] [--scoring generate|expected] | --server URL --model NAME)
        --out PRED.jsonl
    mmscale verify-rationales --predictions COT.jsonl --data DIR (--backbone ... | --server ...) --out JUDGED.jsonl

Both write as they go and resume (see :mod:`mmscale_core.judges.runner`);
``mmscale evaluate`` reads either output directly.
"""

from __future__ import annotations

import argparse

from mmscale_core.errors import MmscaleError

DEFAULT_NEW_TOKENS = {"zero_shot": 16, "icl3": 16, "cot": 512}


def _check_target(args: argparse.Namespace) -> None:
    if bool(args.backbone) == bool(args.server):
        raise MmscaleError("give either --backbone NAME (a local checkpoint) or --server URL (an OpenAI-compatible "
                           "server), not both and not neither")
    if args.server and not args.model:
        raise MmscaleError("--server needs --model NAME (the model name the server serves)")


def load_local_backbone(args: argparse.Namespace, instruction: str):
    """The backbone of ``--backbone`` on ``--device``; its Q-Former (InstructBLIP) reads ``instruction``."""
    import torch

    from mmscale_core.models import BACKBONES, load_backbone, parse_backbone_args

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.backbone in BACKBONES and not BACKBONES[args.backbone].startswith("mmscale_core.models.vlm:"):
        raise MmscaleError(f"backbone {args.backbone!r} is an encoder, not a generative VLM; a prompted judge needs "
                           f"one of: qwen2-vl, llava-onevision, instructblip, phi-3-vision")
    backbone = load_backbone(args.backbone, prompt=instruction, **parse_backbone_args(args.backbone_arg))
    backbone.model.to(args.device)
    return backbone


def _cmd_judge(args: argparse.Namespace) -> int:
    from mmscale_core.data import load_dataset
    from mmscale_core.judges import prompts, runner

    _check_target(args)
    if args.server and args.scoring == "expected":
        raise MmscaleError("--scoring expected reads the model's next-token distribution, which needs a local "
                           "--backbone; a server is scored with --scoring generate")
    template = prompts.load_template(args.prompt, args.prompt_file)
    dataset = load_dataset(args.data)
    rows = runner.split_rows(dataset.scenarios, args.split, args.data)
    block = (prompts.exemplars_block(prompts.sample_exemplars(dataset.scenarios, seed=args.exemplar_seed))
             if args.prompt == "icl3" else "")
    max_new = args.max_new_tokens or DEFAULT_NEW_TOKENS[args.prompt]
    if args.server:
        from mmscale_core.judges.parsing import parse_rating
        from mmscale_core.judges.server import ServerJudge

        judge = ServerJudge(args.server, args.model, max_tokens=max_new, timeout=args.timeout, retries=args.retries)
        data_url = runner.cached_data_urls(dataset.load_image, args.image_side)

        def ask(row) -> dict:
            raw, error = judge.complete(template.render(row.scenario, block), data_url(row.image_id))
            return {"raw_output": raw, "error": error, "prediction": None if error else parse_rating(raw)}

        results = runner.concurrent_results(ask, args.concurrency)
        meta = {"model_id": args.model, "provider": "openai-compatible", "prompt_type": args.prompt}
    else:
        from mmscale_core.judges.local import LocalJudge

        judge = LocalJudge(load_local_backbone(args, template.around_scenario(block)[0]), template, block,
                           max_new_tokens=max_new)
        results = runner.local_results(judge, args.scoring, dataset.load_image)
        meta = {"model_id": judge.model_id, "provider": f"local-{args.scoring}", "prompt_type": args.prompt}
    try:
        summary = runner.run_rows(rows, results, args.out, meta, progress=not args.no_progress, limit=args.limit)
    finally:
        if args.server:
            judge.close()
    print(summary.line(args.out))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from mmscale_core.data import load_dataset
    from mmscale_core.judges import runner, verifier

    _check_target(args)
    dataset = load_dataset(args.data)
    template = verifier.load_verifier_template(args.prompt_file)
    rows = verifier.rationale_rows(args.predictions, dataset.scenarios)
    max_new = args.max_new_tokens or verifier.MAX_NEW_TOKENS
    if args.server:
        from mmscale_core.judges.server import ServerJudge

        judge = ServerJudge(args.server, args.model, max_tokens=max_new, timeout=args.timeout, retries=args.retries)
        data_url = runner.cached_data_urls(dataset.load_image, args.image_side)

        def ask(row) -> dict:
            return verifier.verdict(*judge.complete(verifier.render(template, row), data_url(row.image_id)))

        results = runner.concurrent_results(ask, args.concurrency)
        judge_model = args.model
    else:
        from mmscale_core.judges.local import LocalJudge
        from mmscale_core.judges.prompts import PromptTemplate

        judge = LocalJudge(load_local_backbone(args, ""), PromptTemplate("verifier", "{scenario}"),
                           max_new_tokens=max_new)
        results = verifier.local_results(judge, template, dataset.load_image)
        judge_model = judge.model_id
    try:
        summary = runner.run_rows(rows, results, args.out, {"judge_model": judge_model}, progress=not args.no_progress,
                                  limit=args.limit, record=verifier.record, desc="verify",
                                  unparsed=lambda answer: answer.get("label") is None)
    finally:
        if args.server:
            judge.close()
    print(summary.line(args.out).replace("without a rating", "without a parseable verdict"))
    return 0


def _target_arguments(p: argparse.ArgumentParser) -> None:
    local = p.add_argument_group("local checkpoint")
    local.add_argument("--backbone", help="a VLM backbone: qwen2-vl, llava-onevision, instructblip, phi-3-vision")
    local.add_argument("--backbone-arg", action="append", metavar="KEY=VALUE",
                       help="backbone factory argument (JSON value), repeatable, e.g. path=DIR, torch_dtype=bf16")
    local.add_argument("--device", default="cpu", help="torch device of the local model (default cpu)")
    local.add_argument("--torch-threads", type=int, help="CPU threads for torch")
    server = p.add_argument_group("OpenAI-compatible server (API key from OPENAI_API_KEY, if set)")
    server.add_argument("--server", metavar="URL", help="base URL, e.g. http://127.0.0.1:8000/v1")
    server.add_argument("--model", help="the model name the server serves")
    server.add_argument("--concurrency", type=int, default=8, help="queries in flight at once (default 8)")
    server.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    server.add_argument("--retries", type=int, default=4,
                        help="retries on timeouts, connection errors, 429 and 5xx, with backoff (default 4)")
    server.add_argument("--image-side", type=int, default=768, help="longer image side sent (default 768)")
    p.add_argument("--max-new-tokens", type=int, help="answer length limit")
    p.add_argument("--limit", type=int, help="stop after this many scenarios in the file (a trial run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    from mmscale_core.judges.prompts import EXEMPLAR_SEED, PROMPT_TYPES

    p = subparsers.add_parser(
        "judge", help="prompt a VLM for 1-5 ratings (the benchmark's Task 1), locally or through a server",
        description="Ask a VLM, by prompting, for the moral acceptability (1-5) of every scenario of a split and "
                    "write the upstream release's inference JSONL as it goes (resumable). Local checkpoints: "
                    "--scoring generate (greedy answer, parsed) or expected (expected rating from the next-token "
                    "distribution, all scenarios of an image in one forward). Servers: any OpenAI-compatible "
                    "/chat/completions endpoint.")
    p.add_argument("--data", required=True, help="dataset directory (our layout or the upstream release's)")
    p.add_argument("--split", default="test", help="split to judge (default test)")
    p.add_argument("--prompt", required=True, choices=PROMPT_TYPES, help="prompt type")
    p.add_argument("--prompt-file", help="template with {scenario} (and {exemplars_block} for icl3) instead of "
                                         "the built-in wording")
    p.add_argument("--exemplar-seed", type=int, default=EXEMPLAR_SEED,
                   help=f"seed of the three icl3 examples from the train split (default {EXEMPLAR_SEED})")
    p.add_argument("--scoring", choices=("generate", "expected"), default="generate",
                   help="generate (greedy, parsed; default) or expected (local backbones only)")
    p.add_argument("--out", required=True, help="output JSONL (appended to and resumed if it exists)")
    _target_arguments(p)
    p.set_defaults(func=_cmd_judge)

    v = subparsers.add_parser(
        "verify-rationales", help="label what chain-of-thought rationales rest on (the benchmark's Task 3)",
        description="A judge VLM labels each chain-of-thought rationale of a `mmscale judge --prompt cot` file as "
                    "text-grounded, image-grounded, both, ungrounded or hallucinated-visual, with the evidence it "
                    "names; answers that are not the JSON asked for are recorded as such. Resumable.")
    v.add_argument("--predictions", required=True, help="a cot inference JSONL (mmscale judge or the upstream's)")
    v.add_argument("--data", required=True, help="the dataset the predictions are on (for the images)")
    v.add_argument("--prompt-file", help="verifier template with {scenario} and {cot_trace}")
    v.add_argument("--out", required=True, help="output JSONL (appended to and resumed if it exists)")
    _target_arguments(v)
    v.set_defaults(func=_cmd_verify)


def run_judge_command(argv: list[str]) -> int:
    """Run one ``mmscale judge`` / ``verify-rationales`` command line in this process.

    For the pipeline's ``judge-stage``: it builds only this module's parsers, so nothing here
    imports ``mmscale_core.cli`` (the face of the package sits above every layer). User errors
    propagate as :class:`MmscaleError` to the caller's handler."""
    parser = argparse.ArgumentParser(prog="mmscale")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
