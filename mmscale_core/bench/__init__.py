"""``mmscale bench VERB``: one module per verb, each timing both sides of a comparison in one run.

Why in one place: a speed or memory claim is only worth the ratio measured side by side on the
same machine at the same moment, never a timed unit test. :mod:`mmscale_core.bench.timing` is
the one way they time (alternating order, warm-up, median) and print that ratio. Nothing but
this package and ``mmscale_core.cli`` imports it.

Verbs: ``data`` (loading + validation), ``metrics`` (vectorized vs per-list, and every metric
of ``mmscale evaluate``), ``simulate`` (the default dataset vs its budget), ``prefix``
(shared-prefix vs per-pair VLM encoding), ``morale`` (concurrent annotators on loopback),
``kernel`` (notebook stage start-up, cold vs warm kernel), ``train`` (a default training
step vs its bare forward/backward), ``judge`` (a prompted judge: generate per pair vs the
expected rating with a shared prefix).
"""

# modules defining ``register_bench(subparsers)``, in the order ``mmscale bench --help`` lists them
BENCH_MODULES: tuple[str, ...] = (
    "mmscale_core.bench.data",
    "mmscale_core.bench.kernel",
    "mmscale_core.bench.metrics",
    "mmscale_core.bench.prefix",
    "mmscale_core.bench.morale",
    "mmscale_core.bench.simulate",
    "mmscale_core.bench.train",
    "mmscale_core.bench.judge",
)
