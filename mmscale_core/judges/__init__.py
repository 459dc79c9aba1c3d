"""Prompted VLM judges (the authors' benchmark tasks, issue 22): ask a model instead of training one.

- :mod:`~mmscale_core.judges.prompts`: the three prompt types in our own wording, ``--prompt-file``
  templates, the icl3 exemplars.
- :mod:`~mmscale_core.judges.parsing`: a 1-5 rating from free text (or null, never a crash).
- :mod:`~mmscale_core.judges.local`: a local checkpoint, greedy decoding or the expected rating
  from the next-token distribution (all scenarios of an image in one packed forward).
- :mod:`~mmscale_core.judges.server`: any OpenAI-compatible ``/chat/completions`` endpoint.
- :mod:`~mmscale_core.judges.runner`: the resumable upstream inference JSONL.
- :mod:`~mmscale_core.judges.verifier`: Task 3, labelling what a chain-of-thought rests on.
"""
