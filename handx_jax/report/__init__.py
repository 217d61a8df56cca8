"""Self-contained HTML reports of a run and of a sweep (the last stage: it reads the
outputs of training, evaluation and scaling and embeds every figure and render)."""
