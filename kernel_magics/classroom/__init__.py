"""A class on one GPU box: a JupyterHub service serving one base model with every student's adapters.

* :mod:`.service` — ``python -m kernel_magics classroom --model M``: loads the base once, serves the OpenAI
  API through an in-process engine of the serving registry, authenticates callers with the hub;
* :mod:`.store` — students' adapters uploaded over HTTP, checked, stored atomically as ``<user>/<name>``;
* :mod:`.fairness` — per-user concurrency caps, round-robin between users, token-rate limits (429);
* :mod:`.slots` — the training-slot queue (acquire / heartbeat / release, FIFO, freed when heartbeats stop);
* :mod:`.client` — ``km.publish(...)`` and ``request_slot(...)`` from a student's kernel.

Light module: nothing heavy is imported here.
"""
