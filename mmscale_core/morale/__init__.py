"""MORALE: the paper's annotation interface (sec 3.2, Fig. 4, sec 9) as a web app that feeds the pipeline.

Modules: ``db`` (SQLAlchemy models, engine), ``pool`` (dataset + predictions
-> DB), ``assignment`` (3 distinct annotators per scenario, canaries),
``discrepancy`` (the delta rule, reconfirmation statistics), ``screening``
(annotator quality), ``workflow`` (submissions as transactions), ``queries``
(read-only frames), ``app`` (FastAPI pages), ``export`` (release format),
``cli`` (``mmscale morale ...``), ``server`` (the server as a loopback subprocess),
``bench`` (``mmscale bench morale``).
Import the web parts lazily: they need the ``app`` extra (fastapi, uvicorn, ...).
"""
