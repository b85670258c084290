"""MIL values -> torch tensors: immediate values in the spec and blobs in the package's weight file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

#: MIL DataType name -> numpy dtype of the stored values
DTYPES = {
    "FLOAT16": np.float16, "FLOAT32": np.float32, "FLOAT64": np.float64, "BOOL": np.bool_,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
}
#: dtype strings used by cast / quantize attributes
DTYPE_STRINGS = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64, "int8": np.int8, "uint8": np.uint8, "int16": np.int16,
                 "uint16": np.uint16, "int32": np.int32, "int64": np.int64, "bool": np.bool_}
_BLOB_READERS = {np.float32: "read_float_data", np.float16: "read_fp16_data", np.int8: "read_int8_data", np.uint8: "read_uint8_data",
                 np.int16: "read_int16_data", np.uint16: "read_uint16_data", np.int32: "read_int32_data", np.uint32: "read_uint32_data"}


class UnsupportedProgram(Exception):
    """The program uses something this interpreter does not implement (named in the message)."""


def data_type_name(value_type) -> str:
    from coremltools.proto import MIL_pb2

    return MIL_pb2.DataType.Name(value_type.tensorType.dataType)


def numpy_dtype(value_type) -> np.dtype:
    name = data_type_name(value_type)
    if name not in DTYPES:
        raise UnsupportedProgram(f"tensor data type {name} is not supported")
    return np.dtype(DTYPES[name])


def shape_of(value_type) -> tuple[int, ...]:
    return tuple(int(d.constant.size) for d in value_type.tensorType.dimensions)


def to_torch(array: np.ndarray) -> torch.Tensor:
    """numpy -> torch; unsigned types torch lacks become the next wider signed type (values unchanged)."""
    array = np.ascontiguousarray(array)
    if array.dtype in (np.uint16, np.uint32):
        array = array.astype(np.int64)
    return torch.from_numpy(array.copy()) if array.ndim else torch.tensor(array.item(), dtype=torch.from_numpy(array.reshape(1)).dtype)


class BlobFile:
    """The package's weight.bin, read with coremltools' own blob-storage reader."""

    def __init__(self, weights_dir: Path) -> None:
        self.weights_dir = weights_dir
        self.readers: dict[str, object] = {}

    def read(self, file_name: str, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        from coremltools.libmilstoragepython import _BlobStorageReader

        path = self.weights_dir / file_name.replace("@model_path/weights/", "")
        if str(path) not in self.readers:
            self.readers[str(path)] = _BlobStorageReader(str(path))
        method = _BLOB_READERS.get(dtype.type)
        if method is None:
            raise UnsupportedProgram(f"blob values of type {dtype} are not supported")
        data = np.array(getattr(self.readers[str(path)], method)(offset))
        if dtype == np.float16 and data.dtype != np.float16:
            data = data.view(np.float16) if data.dtype == np.uint16 else data.astype(np.float16)
        return data.astype(dtype, copy=False).reshape(shape)


def decode(value, blobs: BlobFile) -> object:
    """A MIL Value as a torch tensor (tensors), str (strings) or a list of them."""
    kind = value.WhichOneof("value")
    vtype = value.type
    if vtype.WhichOneof("type") == "listType":
        raise UnsupportedProgram("list values are not supported")
    if kind == "blobFileValue":
        dtype = numpy_dtype(vtype)
        return to_torch(blobs.read(value.blobFileValue.fileName, value.blobFileValue.offset, dtype, shape_of(vtype)))
    if kind != "immediateValue":
        raise UnsupportedProgram(f"value kind {kind} is not supported")
    tensor = value.immediateValue.tensor
    which = tensor.WhichOneof("value")
    name = data_type_name(vtype)
    shape = shape_of(vtype)
    if name == "STRING":
        strings = list(tensor.strings.values)
        return strings[0] if not shape else strings
    dtype = numpy_dtype(vtype)
    if which == "bytes":
        array = np.frombuffer(tensor.bytes.values, dtype=dtype)
    elif which is None:
        array = np.zeros(0, dtype=dtype)
    else:
        array = np.asarray(list(getattr(tensor, which).values)).astype(dtype)
    return to_torch(array.reshape(shape))
