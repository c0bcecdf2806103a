"""Task synthesis, one module per task. ``REGISTRY`` maps task name -> module.

Every task module exposes ``TASKS`` (names it builds), ``plan(inputs, seed) -> {task: [Job]}``
(cheap: keys and text only) and ``make(job, images, tools, seed) -> Sample`` (the expensive part).
"""

from datasets.tasks import control, faces, retrieval, style_transfer, styled, subject, t2i

MODULES = [t2i, control, subject, faces, styled, style_transfer, retrieval]
REGISTRY = {name: mod for mod in MODULES for name in mod.TASKS}
ALL_TASKS = list(REGISTRY)
