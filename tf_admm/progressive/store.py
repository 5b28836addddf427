"""The files of a resumable run, written so that a kill at any moment leaves a usable directory.

Every write goes to a temporary name in the same folder, is flushed and fsynced, then renamed
over the final name (``os.replace`` is atomic on POSIX), and the folder is fsynced. Every read
is verified: a file that cannot be parsed or loaded is moved aside to ``NAME.damaged`` with a
warning and reported as missing, so the caller falls back to the last good state instead of
failing on every restart.

>>> import tempfile, tf_admm
>>> store = tf_admm.progressive.store.RunStore(tempfile.mkdtemp())
>>> store.write_json("state.json", {"done": 1})
>>> store.read_json("state.json")
{'done': 1}
>>> store.read_json("missing.json") is None
True
"""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
import zipfile
from typing import Any

import numpy as np

from tf_admm._keras import keras

__all__ = ["RunStore"]


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class RunStore:
    """Atomic writes and verified reads of JSON, arrays and Keras models under ``directory``.

    Paths are relative to the directory; folders are created as needed.

    Args:
        directory: the run's folder (created if missing).
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)

    def path(self, *parts: str) -> str:
        """The absolute path of a file of the run."""
        return os.path.join(self.directory, *parts)

    def exists(self, *parts: str) -> bool:
        return os.path.exists(self.path(*parts))

    # -- writing ------------------------------------------------------------------------------
    def _commit(self, tmp: str, final: str) -> None:
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(os.path.dirname(final))

    def _target(self, rel: str) -> str:
        final = self.path(rel)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        return final

    def write_bytes(self, rel: str, data: bytes) -> None:
        final = self._target(rel)
        tmp = final + ".partial"
        with open(tmp, "wb") as handle:
            handle.write(data)
        self._commit(tmp, final)

    def write_json(self, rel: str, value: Any) -> None:
        self.write_bytes(rel, json.dumps(value, indent=1, default=float).encode())

    def save_arrays(self, rel: str, arrays: dict[str, np.ndarray]) -> None:
        """An ``.npz`` of named arrays, atomically."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self.write_bytes(rel, buffer.getvalue())

    def save_model(self, rel: str, model) -> None:
        """``model.save`` to a ``.keras`` file, atomically."""
        if not rel.endswith(".keras"):
            raise ValueError(f"Model files end in .keras. Received: {rel!r}")
        final = self._target(rel)
        tmp = final[: -len(".keras")] + ".partial.keras"
        model.save(tmp)
        self._commit(tmp, final)

    # -- reading ------------------------------------------------------------------------------
    def discard(self, rel: str, why: str) -> None:
        """Move a damaged file aside (``NAME.damaged``) and warn."""
        final = self.path(rel)
        warnings.warn(
            f"tf_admm: {final} is damaged ({why}); discarded, using the last good state.",
            stacklevel=3,
        )
        if os.path.exists(final):
            os.replace(final, final + ".damaged")

    def read_json(self, rel: str) -> Any:
        """The parsed JSON, or None when missing or damaged."""
        final = self.path(rel)
        if not os.path.exists(final):
            return None
        try:
            with open(final) as handle:
                return json.load(handle)
        except (OSError, ValueError) as error:
            self.discard(rel, f"{type(error).__name__}: {error}")
            return None

    def load_arrays(self, rel: str) -> dict[str, np.ndarray] | None:
        """The arrays of an ``.npz``, or None when missing or damaged."""
        final = self.path(rel)
        if not os.path.exists(final):
            return None
        try:
            with np.load(final, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            self.discard(rel, f"{type(error).__name__}: {error}")
            return None

    def load_model(self, rel: str):
        """The loaded ``.keras`` model, or None when missing or damaged.

        Loaded without its optimizer (``compile=False``): every phase compiles a fresh one and
        restores the optimizer's state from its own backup, and loading the saved optimizer
        into a model compiled with another one only warned ("Skipping variable loading")."""
        final = self.path(rel)
        if not os.path.exists(final):
            return None
        if not zipfile.is_zipfile(final):
            self.discard(rel, "not a complete .keras archive")
            return None
        try:
            return keras.models.load_model(final, compile=False)
        except Exception as error:  # noqa: BLE001 - any failure to load means damaged
            self.discard(rel, f"{type(error).__name__}: {error}")
            return None

    def remove(self, rel: str) -> None:
        """Delete a file or folder of the run if present."""
        final = self.path(rel)
        if os.path.isdir(final):
            shutil.rmtree(final)
        elif os.path.exists(final):
            os.remove(final)
