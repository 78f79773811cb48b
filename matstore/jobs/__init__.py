"""Background jobs: a PostgreSQL task queue (procrastinate) in matstore's own database.

* :mod:`matstore.jobs.app` – the procrastinate app (``matstore.jobs.app.app``);
* :mod:`matstore.jobs.tasks` – the tasks: ingest, compute chunks, refit, periodic scans;
* :mod:`matstore.jobs.schedule` – periodic jobs from a YAML schedule file;
* :mod:`matstore.jobs.dispatch` – :func:`~matstore.jobs.dispatch.workers_present` and
  :func:`~matstore.jobs.dispatch.defer_and_wait`, used by ``matstore pipeline``.

``matstore worker`` runs a worker; any number of workers on any number of machines share
the queue through the database.  Submodules are imported on demand so that importing
:mod:`matstore.jobs` stays cheap.
"""
