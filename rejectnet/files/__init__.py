"""Every file rejectnet writes or reads for a model, and the two rules they all follow.

* :mod:`~rejectnet.files.model_files`: ``save``, ``load``, ``read_metadata`` (a
  safetensors file, never pickle; public as :mod:`rejectnet.serialization`).
* :mod:`~rejectnet.files.tensor_layout`: the safetensors layout, parsed by hand
  (header, dtypes, offsets, the content hash).
* :mod:`~rejectnet.files.onnx_file`: ``export_onnx`` (public as :mod:`rejectnet.export`).
* :mod:`~rejectnet.files.aoti_package`: ``export_aoti``, ``load_aoti`` (public as
  :mod:`rejectnet.aoti`).
* :mod:`~rejectnet.files.bounded_reads`: the one way a file is read (a regular file, at
  most a given size, never blocking).
* :mod:`~rejectnet.files.atomic_writes`: the one way a file is written (a temporary file
  renamed over the destination, never through a link).

This package's ``__init__`` imports nothing, so that importing the low-level readers
and writers never loads the model code above them.
"""

__all__: list[str] = []
