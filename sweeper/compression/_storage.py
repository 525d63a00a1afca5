"""Compact on-disk storage for compressed weights: sparse bitmasks, packed low-bit integers, one blob.

Two layers, both plain data (``torch.load(weights_only=True)`` reads them back):

* :func:`encode_tensor` stores one tensor densely or, when it is cheaper, as a bitmask of
  its non-zero positions plus the kept values; integer codes can be packed at ``bits``
  bits per value.
* :func:`pack_tree` moves every tensor of a nested payload into a single ``uint8`` blob and
  the rest (names, shapes, scales) into compressed JSON, so that a file holds two storage
  records instead of one per tensor (each record costs a few hundred bytes of zip headers
  and pickle, which matters for small models).
"""

from __future__ import annotations

import json
import math
import warnings
import zlib
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "decode_state",
    "decode_tensor",
    "encode_state",
    "encode_tensor",
    "pack_bits",
    "pack_tree",
    "unpack_bits",
    "unpack_tree",
]

_REF = "__blob__"


def pack_bits(values: Tensor, bits: int) -> Tensor:
    """Pack non-negative integers below ``2**bits`` into bytes, ``bits`` bits each (little-endian).

    Example:
        >>> pack_bits(torch.tensor([1, 2, 3]), 2).tolist()
        [57]
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits={bits}: must be in 1..8")
    values = values.flatten()
    if values.numel() and (values.min() < 0 or values.max() >= 2**bits):
        raise ValueError(f"values must lie in [0, {2**bits}) to be packed at {bits} bits")
    values = values.to(torch.uint8)
    return values.clone() if bits == 8 else pack_groups(values, bits)


def unpack_bits(packed: Tensor, bits: int, count: int) -> Tensor:
    """Inverse of :func:`pack_bits`: the first ``count`` integers, as int64."""
    packed = packed.reshape(-1).to(torch.uint8)
    codes = packed[:count].clone() if bits == 8 else unpack_groups(packed, bits, count)
    return codes.to(torch.int64)


def pack_groups(flat: Tensor, bits: int) -> Tensor:
    """Eight codes of ``bits`` bits fill ``bits`` bytes: byte ``k`` of a group collects the bits ``8k .. 8k+7`` of
    the codes laid end to end. Built column by column, so the work takes a few bytes a code (a bit stream of a
    byte a bit, widened to int32, took 80 bytes a 4-bit code and fragmented the heap over a model's layers)."""
    count = flat.numel()
    groups = torch.nn.functional.pad(flat, (0, (-count) % 8)).view(-1, 8).to(torch.int16)
    out = torch.zeros(groups.shape[0], bits, dtype=torch.int16, device=flat.device)
    for i in range(8):
        for k in range(bits):
            shift = i * bits - 8 * k  # where code i's lowest bit lands in byte k
            if -bits < shift < 8:
                part = groups[:, i] << shift if shift >= 0 else groups[:, i] >> -shift
                out[:, k] |= part & 255
    return out.to(torch.uint8).reshape(-1)[: (count * bits + 7) // 8].clone()


def unpack_groups(packed: Tensor, bits: int, count: int) -> Tensor:
    """Inverse of :func:`pack_groups`: the first ``count`` codes, as ``uint8``."""
    groups = (count + 7) // 8
    padded = torch.nn.functional.pad(packed[: groups * bits], (0, groups * bits - min(packed.numel(), groups * bits)))
    data = padded.view(groups, bits).to(torch.int16)
    codes = torch.zeros(groups, 8, dtype=torch.int16, device=packed.device)
    for i in range(8):
        for k in range(bits):
            shift = i * bits - 8 * k
            if -bits < shift < 8:
                codes[:, i] |= data[:, k] >> shift if shift >= 0 else data[:, k] << -shift
    return (codes & (2**bits - 1)).to(torch.uint8).reshape(-1)[:count].clone()


def _value_bytes(count: int, tensor: Tensor, bits: int | None) -> int:
    return math.ceil(count * bits / 8) if bits else count * tensor.element_size()


def _encode_values(values: Tensor, bits: int | None) -> Tensor:
    if bits is None:
        return values  # not copied here: pack_tree copies every tensor of a payload into its blob
    return pack_bits(values.to(torch.int64) + 2 ** (bits - 1), bits)  # signed codes -> unsigned


def encode_tensor(tensor: Tensor, *, bits: int | None = None, keep: Tensor | None = None) -> dict[str, Any]:
    """Store ``tensor`` densely or as bitmask + non-zero values, whichever takes fewer bytes.

    Args:
        tensor: float weights or signed integer codes.
        bits: pack integer codes in ``[-2**(bits-1), 2**(bits-1))`` at ``bits`` bits each;
            ``None`` keeps the values in their own dtype.
        keep: the positions a sparse encoding stores (default: the non-zero ones). A fixed mask
            (a pruning mask) makes the size independent of values that happen to be zero.

    Returns:
        Plain data for :func:`decode_tensor`.
    """
    flat = tensor.detach().cpu().flatten()
    if flat.dtype == torch.float64 and torch.equal(flat.float().double(), flat):
        flat = flat.float()  # e.g. per-channel scales computed in float32: stored exactly in half the bytes
    keep = flat != 0 if keep is None else keep.detach().cpu().flatten().bool()
    count = int(keep.sum())
    dtype = str(tensor.dtype).removeprefix("torch.")
    encoded: dict[str, Any] = {"shape": list(tensor.shape), "dtype": dtype, "bits": bits}
    dense_cost = _value_bytes(flat.numel(), flat, bits)
    sparse_cost = math.ceil(flat.numel() / 8) + _value_bytes(count, flat, bits)
    if sparse_cost < dense_cost:
        encoded.update(mask=pack_bits(keep.to(torch.int64), 1), values=_encode_values(flat[keep], bits), count=count)
    else:
        encoded.update(values=_encode_values(flat, bits), count=flat.numel())
    return encoded


def decode_tensor(encoded: dict[str, Any]) -> Tensor:
    """Rebuild the tensor stored by :func:`encode_tensor`."""
    shape, bits, count = encoded["shape"], encoded["bits"], encoded["count"]
    dtype = getattr(torch, encoded["dtype"])
    values = encoded["values"]
    if bits is not None:
        values = (unpack_bits(values, bits, count) - 2 ** (bits - 1)).to(dtype)
    if "mask" not in encoded:
        return values.to(dtype).reshape(shape).clone()
    numel = math.prod(shape)
    keep = unpack_bits(encoded["mask"], 1, numel).bool()
    out = torch.zeros(numel, dtype=dtype)
    out[keep] = values.to(dtype)
    return out.reshape(shape)


def pack_tree(tree: Any) -> dict[str, Any]:
    """Move every tensor of a nested dict/list payload into one ``uint8`` blob; see :func:`unpack_tree`.

    What remains (keys, shapes, scales, offsets) is JSON, stored zlib-compressed as a second
    small ``uint8`` tensor, so the file holds two storage records whatever the model.
    Tuples come back as lists; other leaves must be JSON values (str, int, float, bool, None).
    """
    chunks: list[Tensor] = []
    offset = 0

    def walk(node: Any) -> Any:
        nonlocal offset
        if isinstance(node, Tensor):
            data = node.detach().cpu().contiguous().flatten().view(torch.uint8)
            ref = {
                _REF: [offset, data.numel()],
                "dtype": str(node.dtype).removeprefix("torch."),
                "shape": list(node.shape),
            }
            chunks.append(data)
            offset += data.numel()
            return ref
        if isinstance(node, dict):
            return {str(key): walk(value) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [walk(value) for value in node]
        if node is None or isinstance(node, str | int | float | bool):
            return node
        raise TypeError(f"cannot store a {type(node).__name__} in an artifact payload")

    index = zlib.compress(json.dumps(walk(tree), separators=(",", ":")).encode(), 9)
    blob = torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.uint8)
    return {"blob": blob, "index": torch.frombuffer(bytearray(index), dtype=torch.uint8)}


def unpack_tree(packed: dict[str, Any]) -> Any:
    """Inverse of :func:`pack_tree`. The tensors are views into the blob where their offset is aligned for their
    type (no second copy of a large payload while it is decoded), fresh copies otherwise."""
    blob = packed["blob"]

    def walk(node: Any) -> Any:
        if isinstance(node, dict) and _REF in node:
            start, length = node[_REF]
            dtype = getattr(torch, node["dtype"])
            data = blob[start : start + length]
            if start % dtype.itemsize:  # not aligned for its type: a fresh storage (an aligned one is a view)
                data = data.clone()
            return data.view(dtype).reshape(node["shape"])
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    return walk(json.loads(zlib.decompress(packed["index"].numpy().tobytes())))


_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)


def _encode_value(value: Any) -> Any:
    if isinstance(value, Tensor) and value.is_quantized:
        encoded: dict[str, Any] = {
            "quantized": str(value.dtype).removeprefix("torch."),
            "int_repr": encode_tensor(value.int_repr()),
        }
        if value.qscheme() in _PER_CHANNEL:
            encoded.update(
                qscheme=str(value.qscheme()).removeprefix("torch."),
                scales=encode_tensor(value.q_per_channel_scales()),
                # integers (all zero when symmetric), or floats for per_channel_affine_float_qparams
                # (int8 embedding rows: value = (code - zero_point) * scale, both per row)
                zero_points=encode_tensor(value.q_per_channel_zero_points()),
                axis=value.q_per_channel_axis(),
            )
        else:
            encoded.update(scale=value.q_scale(), zero_point=value.q_zero_point())
        return encoded
    if isinstance(value, Tensor):
        return {"tensor": encode_tensor(value)}
    if isinstance(value, tuple):
        return {"tuple": [_encode_value(v) for v in value]}
    if isinstance(value, torch.dtype):
        return {"torch_dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.qscheme):  # quantized modules (activations, hardswish) keep theirs in their state
        return {"torch_qscheme": str(value).removeprefix("torch.")}
    return {"plain": value}  # JSON values only: pack_tree refuses anything else


def _decode_value(encoded: dict[str, Any]) -> Any:
    if "quantized" in encoded:
        codes = decode_tensor(encoded["int_repr"])  # int8 / uint8: the quantized dtype follows from it
        with warnings.catch_warnings():  # quantized tensors are deprecated in torch, still what the kernels take
            warnings.simplefilter("ignore")
            if "scales" in encoded:
                # float zero points give per_channel_affine_float_qparams, integer ones per_channel_affine
                value = torch._make_per_channel_quantized_tensor(
                    codes, decode_tensor(encoded["scales"]), decode_tensor(encoded["zero_points"]), encoded["axis"]
                )
                stored = encoded.get("qscheme")  # absent in payloads written before it was recorded
                rebuilt_float = value.qscheme() == torch.per_channel_affine_float_qparams
                if stored is not None and (stored == "per_channel_affine_float_qparams") != rebuilt_float:
                    raise ValueError(f"quantized tensor stored as {stored}, rebuilt as {value.qscheme()}")
                return value
            return torch._make_per_tensor_quantized_tensor(codes, encoded["scale"], encoded["zero_point"])
    if "tensor" in encoded:
        return decode_tensor(encoded["tensor"])
    if "tuple" in encoded:
        return tuple(_decode_value(v) for v in encoded["tuple"])
    if "torch_dtype" in encoded:
        return getattr(torch, encoded["torch_dtype"])
    if "torch_qscheme" in encoded:
        return getattr(torch, encoded["torch_qscheme"])
    return encoded["plain"]


def encode_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict (float, sparse or quantized tensors) as one compact blob payload.

    Quantized tensors keep their integer codes (sparse when mostly zero) and their
    quantization parameters: per tensor, per channel, or per row with float zero points
    (``per_channel_affine_float_qparams``, the int8 embedding tables).

    The modules' state-dict versions (``state._metadata``) are kept: quantized modules read
    their state differently by version. Tensors the model ties (a language model's input and output
    embeddings) are stored once: the later keys refer to the first.
    """
    metadata = getattr(state, "_metadata", None) or {}
    versions = {prefix: dict(meta) for prefix, meta in metadata.items()}
    encoded: dict[str, Any] = {}
    seen: dict[tuple[int, tuple[int, ...], torch.dtype], str] = {}
    for key, value in state.items():
        tie = (value.data_ptr(), tuple(value.shape), value.dtype) if _plain_tensor(value) else None
        if tie is not None and tie in seen:
            encoded[key] = {"same_as": seen[tie]}
            continue
        if tie is not None:
            seen[tie] = key
        encoded[key] = _encode_value(value)
    return pack_tree({"state": encoded, "versions": versions})


def _plain_tensor(value: Any) -> bool:
    return isinstance(value, Tensor) and not value.is_quantized and value.numel() > 0


def decode_state(payload: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_state`: the state dict to load into the rebuilt module."""
    tree = unpack_tree(payload)
    state: OrderedDict[str, Any] = OrderedDict()
    for key, value in tree["state"].items():
        state[key] = state[value["same_as"]] if "same_as" in value else _decode_value(value)
    # torch's state dicts carry per-module versions in this attribute (load_state_dict reads it)
    setattr(state, "_metadata", OrderedDict(tree["versions"]))  # noqa: B010
    return state
