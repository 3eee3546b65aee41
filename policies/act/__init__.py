"""ACT: action chunking with transformers and a CVAE (Zhao et al. 2023), trained from scratch per task."""
