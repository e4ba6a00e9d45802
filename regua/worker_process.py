"""The module each `regua worker` process imports: the broker and actors from the environment."""

from __future__ import annotations

from regua.assembly import build_jobs, lazy_context
from regua.logs import configure_logging
from regua.sandbox.dev import with_dev_defaults
from regua.settings import Settings
from workers.tuning import tune_worker_process

tune_worker_process()
settings = with_dev_defaults(Settings.from_env())
configure_logging(settings)
jobs = build_jobs(settings, lazy_context(settings))
broker = jobs.broker
