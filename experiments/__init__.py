"""Turn run directories (metrics.jsonl, summary.json, gains.npz) into the paper's tables and figures.
Nothing here trains; everything here reads what funnel.train wrote."""
