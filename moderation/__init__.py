"""Content moderation: a policy of zero-shot categories, per-upload decisions with the time
ranges behind them (``decide``), and the job/CLI glue that writes the ``moderation`` table."""
