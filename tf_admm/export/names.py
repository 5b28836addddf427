"""Drop the names a ``.tflite`` file carries for people, not for the interpreter.

The converter names every tensor after the graph ops it came from, and fused ops concatenate
those names (``model/bn_3/batchnorm/add_1;model/conv2d_3/convolution;...``): on a small network
they are several percent of the file. :func:`strip_names` re-serializes a file without its
description, subgraph names and the names of its intermediate tensors. It keeps the names of
the inputs and outputs (what ``Interpreter.get_input_details()`` shows), the signature defs
(``get_signature_runner()`` still works), the metadata and every buffer, each buffer's data
starting at a 16-byte boundary (the generated object API would pack them byte-aligned; LiteRT
and TFLite Micro read weights in place). The weights are the same bytes; only the
flatbuffer's tables move.

>>> import os, tempfile, numpy as np, tf_admm
>>> from tf_admm import keras
>>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
>>> folder = tempfile.mkdtemp()
>>> full = tf_admm.export_tflite(model, os.path.join(folder, "fc.tflite"))
>>> short = tf_admm.export_tflite(model, os.path.join(folder, "s.tflite"), strip_names=True)
>>> short.bytes < full.bytes
True
"""

from __future__ import annotations

import functools
import os

import numpy as np

from tf_admm.export.checks import check_output_path
from tf_admm.tflite_file import IDENTIFIER, is_tflite, litert_schema

__all__ = ["strip_names", "strip_tflite_names"]

ALIGNMENT = 16  # bytes: where the converter starts each buffer's data


@functools.cache
def _aligned_buffer_type(schema):
    """A ``BufferT`` whose ``Pack`` writes its data at an ``ALIGNMENT`` boundary (the generated
    ``BufferT.Pack`` aligns to 1 byte)."""

    class AlignedBuffer(schema.BufferT):
        def Pack(self, builder):  # noqa: N802 - the flatbuffers object API's name
            data = None
            if self.data is not None:
                payload = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(payload), ALIGNMENT)
                builder.head -= len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                data = builder.EndVector(len(payload))
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBuffer


def _aligned_buffer(schema, buffer):
    """``buffer`` (a ``BufferT``) as an ``AlignedBuffer`` of the same fields."""
    aligned = _aligned_buffer_type(schema)()
    aligned.data, aligned.offset, aligned.size = buffer.data, buffer.offset, buffer.size
    return aligned


def strip_names(content: bytes) -> bytes:
    """``content`` (a ``.tflite`` flatbuffer) without its description, subgraph names and
    intermediate tensor names; inputs', outputs' and signature names, metadata and buffers
    kept.

    >>> import os, tempfile, tf_admm
    >>> from tf_admm import keras
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.ReLU()])
    >>> path = tf_admm.export_tflite(net, os.path.join(tempfile.mkdtemp(), "n.tflite")).path
    >>> content = open(path, "rb").read()
    >>> len(strip_names(content)) < len(content)
    True

    Raises:
        ValueError: if ``content`` is not a ``.tflite`` file, or stores its buffers outside the
            flatbuffer (the format of files over 2 GB), which this rewrite would lose.
    """
    import flatbuffers

    schema = litert_schema()
    content = bytes(content)
    if not is_tflite(content):
        raise ValueError(
            "strip_names needs a .tflite flatbuffer (file identifier 'TFL3' at bytes 4-8). "
            f"Received {len(content)} bytes starting {content[:8]!r}"
        )
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    outside = [i for i, b in enumerate(model.buffers or []) if b.offset > 1]
    if outside:
        raise ValueError(
            "strip_names rewrites the flatbuffer, and this file keeps buffers after it "
            f"(offset-stored, the format of files over 2 GB): buffers {outside[:5]}. Received "
            f"a file of {len(content):,} bytes"
        )
    model.description = None
    for subgraph in model.subgraphs or []:
        subgraph.name = None
        kept = {int(i) for i in subgraph.inputs if i is not None}
        kept |= {int(i) for i in subgraph.outputs if i is not None}
        for index, tensor in enumerate(subgraph.tensors or []):
            if index not in kept:
                tensor.name = None
    model.buffers = [_aligned_buffer(schema, b) for b in model.buffers or []]
    builder = flatbuffers.Builder(len(content))
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def strip_tflite_names(
    source: str | os.PathLike, destination: str | os.PathLike, *, overwrite: bool = False
) -> int:
    """Write ``source`` (any ``.tflite`` file, ours or another tool's) to ``destination``
    without the names no interpreter needs (:func:`strip_names`); returns its bytes.

    ``export_tflite(..., strip_names=True)`` does the same for the files it writes. The
    source file is not changed.

    >>> import os, tempfile, tf_admm
    >>> from tf_admm import keras
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    >>> folder = tempfile.mkdtemp()
    >>> source = tf_admm.export_tflite(net, os.path.join(folder, "fc.tflite"))
    >>> stripped = tf_admm.strip_tflite_names(source.path, os.path.join(folder, "fc_small.tflite"))
    >>> stripped < source.bytes
    True

    Raises:
        ValueError / FileExistsError: on a missing source, a destination that exists without
            ``overwrite=True`` or equals the source, or content :func:`strip_names` refuses;
            nothing is written then.
    """
    if not isinstance(source, (str, os.PathLike)) or not os.path.isfile(source):
        raise ValueError(f"source must name an existing .tflite file. Received: {source!r}")
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite must be True or False. Received: overwrite={overwrite!r}")
    source = os.fspath(source)
    if isinstance(destination, (str, os.PathLike)) and os.path.abspath(
        destination
    ) == os.path.abspath(source):
        raise ValueError(
            "destination must differ from source (the source file is kept). Received both "
            f"as {source!r}"
        )
    destination = check_output_path(destination, overwrite, "destination")
    with open(source, "rb") as handle:
        stripped = strip_names(handle.read())
    with open(destination, "wb") as handle:
        handle.write(stripped)
    return len(stripped)
