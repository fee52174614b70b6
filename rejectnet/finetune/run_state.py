"""The run's state in a checkpoint: now in :mod:`rejectnet.finetune.resume`.

Kept so that ``from rejectnet.finetune.run_state import RunState`` (and the other names)
still works.
"""

from rejectnet.finetune.resume import RankState, RunState, capture, check_restorable, restore

__all__ = ["RankState", "RunState", "capture", "check_restorable", "restore"]
