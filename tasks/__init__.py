"""The project's own tasks (task families such as robosuite's are resolved by the registry).

Envs resolve a task name here, below the registry, so nothing in envs/ calls back up into it.
"""

from __future__ import annotations

import importlib

from pi0bench.errors import UserError

TASKS: dict[str, str] = {
    "drawer_tidy": "pi0bench.tasks.drawer_tidy:DrawerTidy",
    "towel_fold": "pi0bench.tasks.towel_fold:TowelFold",
    "paper_towel_replace": "pi0bench.tasks.paper_towel_replace:PaperTowelReplace",
}


def make_own_task(name: str):
    """A fresh instance of one of the project's tasks."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose from: {', '.join(sorted(TASKS))} (see pi0bench tasks)")
    module, attr = TASKS[name].split(":")
    return getattr(importlib.import_module(module), attr)()
