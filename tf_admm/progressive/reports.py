"""Listeners of a progressive run: each turns the stage reports into one kind of output.

:class:`tf_admm.ProgressiveCompressor` calls ``on_stage_end(report, run)`` on each listener
after every stage (``run`` gives ``reports``, ``metric``, ``dense_metric`` and ``tolerance``).
With a ``directory`` it uses all three below; pass ``listeners=[...]`` to choose, or add your
own object with that one method.

>>> class Print:
...     def on_stage_end(self, report, run):
...         print(report["name"], report["passed"])
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from tf_admm.progressive.store import RunStore

__all__ = ["FigureReporter", "JsonReporter", "TensorBoardReporter"]


class JsonReporter:
    """``stage_NN/report.json`` for every stage, written atomically."""

    def __init__(self, store: RunStore):
        self.store = store

    def on_stage_end(self, report: dict, run: Any) -> None:
        self.store.write_json(f"stage_{report['stage']:02d}/report.json", report)


class TensorBoardReporter:
    """Scalars per stage (metric, rates, per-layer sparsity) and the ADMM curves (residuals,
    rho) under ``path``; does nothing without the ``tensorboard`` package
    (the ``[reports]`` extra of tf_admm)."""

    def __init__(self, path: str):
        try:
            import tensorboard  # noqa: F401  (tf.summary needs it)
        except ImportError:  # pragma: no cover - optional dependency
            self.writer = None
        else:
            self.writer = tf.summary.create_file_writer(path)

    def on_stage_end(self, report: dict, run: Any) -> None:
        if self.writer is None:
            return
        step = len(run.reports)
        first_epoch = sum(
            len(r["history"].get("admm", {}).get("admm_primal_residual", []))
            for r in run.reports[:-1]
        )
        metric = run.metric
        with self.writer.as_default():
            tf.summary.scalar(f"stage/{metric}", report[metric], step=step)
            tf.summary.scalar("stage/pruning_rate", report["pruning_rate"], step=step)
            tf.summary.scalar("stage/storage_rate", report["storage_rate"], step=step)
            for name, sparsity in report["layers"].items():
                tf.summary.scalar(f"sparsity/{name}", sparsity, step=step)
            admm = report["history"].get("admm", {})
            for key in ("admm_primal_residual", "admm_dual_residual", "admm_rho"):
                for i, value in enumerate(admm.get(key, [])):
                    tf.summary.scalar(f"admm/{key[5:]}", value, step=first_epoch + i)
        self.writer.flush()


class FigureReporter:
    """PNG figures in ``folder``: accuracy against compression, the primal residual over the
    ADMM epochs, per-layer sparsity of the last good stage. Needs matplotlib; draws on
    ``matplotlib.figure.Figure`` objects, so the user's backend and pyplot's figures (a
    notebook's inline plots) are left alone."""

    def __init__(self, folder: str):
        self.folder = folder

    def on_stage_end(self, report: dict, run: Any) -> None:
        try:
            from matplotlib.figure import Figure
        except ImportError:  # pragma: no cover - optional dependency
            return
        reports, metric = run.reports, run.metric
        os.makedirs(self.folder, exist_ok=True)
        good = [r for r in reports if r["passed"]]
        fig = Figure(figsize=(5, 3.5))
        ax = fig.subplots()
        for group, style in ((good, "o-"), ([r for r in reports if not r["passed"]], "x")):
            if group:
                ax.plot([r["pruning_rate"] for r in group], [r[metric] for r in group], style)
        ax.axhline(run.dense_metric, color="gray", ls="--", label="dense")
        ax.axhline(run.dense_metric - run.tolerance, color="red", ls=":", label="tolerance")
        ax.set_xscale("log")
        ax.set_xlabel("pruning rate (weights / nonzeros)")
        ax.set_ylabel(metric)
        ax.legend()
        self._save(fig, "accuracy_vs_compression.png")
        fig = Figure(figsize=(5, 3.5))
        ax = fig.subplots()
        offset, positive = 0, False
        for r in reports:
            curve = r["history"].get("admm", {}).get("admm_primal_residual", [])
            if curve:
                ax.plot(range(offset, offset + len(curve)), curve, label=r["name"])
                offset += len(curve)
                positive = positive or max(curve) > 0
        if positive:  # a log axis over no positive value only warns and draws nothing
            ax.set_yscale("log")
        ax.set_xlabel("ADMM epoch")
        ax.set_ylabel("||W - Z|| / ||W||")
        if offset:
            ax.legend(fontsize=7)
        self._save(fig, "residuals.png")
        last = (good or reports)[-1]
        fig = Figure(figsize=(5, 3.5))
        ax = fig.subplots()
        names = list(last["layers"])
        ax.bar(names, [last["layers"][n] for n in names])
        ax.set_ylim(0, 1)
        ax.set_ylabel("sparsity")
        ax.set_title(last["name"])
        self._save(fig, "layer_sparsity.png")

    def _save(self, fig, name: str) -> None:
        fig.tight_layout()
        path = os.path.join(self.folder, name)
        fig.savefig(path + ".partial.png", dpi=100)
        os.replace(path + ".partial.png", path)
