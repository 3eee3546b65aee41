"""MuJoCo worlds: robots, scenes, controllers, rendering and the gymnasium env.

Importing this package registers one gymnasium id per task (``pi0bench/DrawerTidy-v0``...).
"""

import gymnasium

GYM_IDS = {
    "drawer_tidy": "pi0bench/DrawerTidy-v0",
    "towel_fold": "pi0bench/TowelFold-v0",
    "paper_towel_replace": "pi0bench/PaperTowelReplace-v0",
}

for _task, _env_id in GYM_IDS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(_env_id, entry_point="pi0bench.envs.task_env:TaskEnv",
                           kwargs={"task": _task})
