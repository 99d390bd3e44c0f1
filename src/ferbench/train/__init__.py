"""One training job: the job around it (jobs: inputs, artefacts, the ``train`` and ``pretrain``
verbs), its training loop (trainer), evaluation and probes (evaluation, metrics, probe), and
its checkpoints and numerical guards (checkpoint, divergence)."""
