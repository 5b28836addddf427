"""Progressive compression: stages of growing targets, each seeded by the previous result.

:class:`ProgressiveCompressor` drives a plan (:mod:`tf_admm.progressive.plan`) stage by stage
(:func:`tf_admm.progressive.stage.run_stage`: ADMM, hard projection, retraining). Weights that an
earlier stage pruned stay zero in every later stage. After every stage the validation metric is
compared with the dense model's; a stage outside the tolerance is reported, the last good model
is kept, and optionally a smaller step is tried first
(:func:`tf_admm.progressive.guard.smaller_stage`).
Listeners (:mod:`tf_admm.progressive.reports`) write the JSON reports, TensorBoard scalars and
figures.

Everything needed to resume lives in ``directory``
(:class:`tf_admm.progressive.store.RunStore`, every file written atomically): the dense model,
the model after every finished stage, the live plan and the reports (``state.json``), and
inside the running stage the model after its hard projection and a backup of each phase at
every epoch end. A killed run started again with the same arguments resumes where it stopped;
with ``(x, y)`` array data it then ends with the same weights as an uninterrupted run. A
damaged file is set aside and the run falls back to the last good state.
:class:`ProgressiveCompressor` has a runnable example; plans are built as in
:mod:`tf_admm.progressive.plan`.

The modules: :mod:`~tf_admm.progressive.plan` (stages as data), :mod:`~tf_admm.progressive.stage`
(one stage: wrap, ADMM, hard projection, retraining), :mod:`~tf_admm.progressive.guard` (the
smaller step after a failed one), :mod:`~tf_admm.progressive.store` (crash-safe files),
:mod:`~tf_admm.progressive.reports` (listeners), :mod:`~tf_admm.progressive.driver` (the run).
"""

from tf_admm.progressive.driver import ProgressiveCompressor
from tf_admm.progressive.plan import (
    Stage,
    geometric_stages,
    more_bits,
    stages_from_json,
    stages_to_json,
)

__all__ = [
    "ProgressiveCompressor",
    "Stage",
    "geometric_stages",
    "more_bits",
    "stages_from_json",
    "stages_to_json",
]
