"""The container of a saved model: a zip of ``.npy`` members and a JSON header.

It is what ``np.savez`` writes, but read here member by member: only the members
the header names are opened, each ``.npy`` header is checked against the dtype and
shape the JSON header expects before a byte of data is decompressed, and a member
can never claim more memory than the file (or a bounded compression ratio) backs.
Nothing is unpickled: only numbers, booleans and strings are read.

The header carries a SHA-256 digest of itself and of every member it names, so a file
edited after it was saved (a field changed by hand, an array swapped) is refused even
where the edit leaves a consistent model. It guards against accidents, not attackers:
whoever edits a file can compute a new digest, which is why everything loaded is
also checked for consistency (``_persistence``), and why loading never runs code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tokenize
import zipfile
import zlib

import numpy as np

META = "meta"
DIGEST = "digest"
_MAX_META_BYTES = 64 << 20  # the JSON header: configuration, names and the epoch log
_MAX_INFLATION = 100  # a compressed member may expand this much (save_model never compresses)
_INFLATION_SLACK = 1 << 16
_ARRAY_KINDS = "biufU"  # booleans, integers, floats and str: no objects, no pickles


class ModelFileError(ValueError):
    """A file is not a readable sklearn-din model (truncated, tampered, or another format).

    A subclass of ``ValueError``; :func:`load_model` shows an example.
    """


def _member_digest(key: str, values: np.ndarray) -> str:
    digest = hashlib.sha256(f"{key}\0{values.dtype.str}\0{values.shape}\0".encode())
    digest.update(memoryview(np.require(values, requirements="C")).cast("B"))
    return digest.hexdigest()


def content_digest(meta: dict, member_digests: dict[str, str]) -> str:
    """The digest of a header (without its ``digest`` entry) and of the members it names."""
    header = {k: v for k, v in meta.items() if k != DIGEST}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, allow_nan=True).encode())
    for key in sorted(member_digests):
        digest.update(f"\0{key}\0{member_digests[key]}".encode())
    return digest.hexdigest()


def write_model_file(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``meta`` (as JSON, with the content digest) and ``arrays`` into one ``.npz``."""
    members = {key: np.require(value, requirements="C") for key, value in arrays.items()}
    digests = {key: _member_digest(key, values) for key, values in members.items()}
    members[META] = np.asarray(json.dumps({**meta, DIGEST: content_digest(meta, digests)}))
    with open(path, "wb") as f:
        np.savez(f, allow_pickle=False, **members)


class ModelFileReader:
    """Reads the header and named members of a model file, checking each as it goes.

    Every problem with the file's content raises :class:`ModelFileError`; only a
    path that cannot be opened raises an ``OSError``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "rb")  # noqa: SIM115  (closed by close())
        self._size = os.fstat(self._file.fileno()).st_size
        self.digests: dict[str, str] = {}  # of the members read so far
        try:
            self._zip = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            self._file.close()
            raise self.error(f"not a zip archive ({type(exc).__name__}: {exc})") from None

    def __enter__(self) -> ModelFileReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def error(self, reason: str) -> ModelFileError:
        return ModelFileError(f"{self.path} is not a readable sklearn-din model file ({reason}).")

    def members(self) -> list[str]:
        """Names of the arrays in the file (from its directory: nothing is read)."""
        return [n[: -len(".npy")] for n in self._zip.namelist() if n.endswith(".npy")]

    def meta(self) -> object:
        """The JSON header, parsed."""
        text = self.array(META, kind="U", shape=(), limit=_MAX_META_BYTES)
        try:
            return json.loads(str(text))
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep JSON
            raise self.error(f"its header is not valid JSON ({type(exc).__name__})") from None

    def array(self, key: str, *, dtype: str | None = None, kind: str | None = None,
              shape: tuple[int, ...] | None = None, limit: int | None = None) -> np.ndarray:
        """Member ``key``, which must have ``dtype`` (or dtype ``kind``) and ``shape`` if given."""
        try:
            info = self._zip.getinfo(f"{key}.npy")
        except KeyError:
            raise self.error(f"member {key!r} is missing") from None
        try:
            with self._zip.open(info) as member:
                return self._read(member, info, key, dtype, kind, shape, limit)
        except ModelFileError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError,
                NotImplementedError, OverflowError) as exc:
            # a bad CRC (bit flip), a truncated member, an encrypted or unknown compression
            raise self.error(f"member {key!r}: {type(exc).__name__}: {exc}") from None

    def _read(self, member: zipfile.ZipExtFile, info: zipfile.ZipInfo, key: str,
              dtype: str | None, kind: str | None, shape: tuple[int, ...] | None,
              limit: int | None) -> np.ndarray:
        # Bound what the member may expand to before decompressing any of it.
        if info.compress_size > self._size:
            raise self.error(f"member {key!r} claims {info.compress_size:,} bytes, more than "
                             "the file holds")
        if (info.compress_type != zipfile.ZIP_STORED
                and info.file_size > _MAX_INFLATION * info.compress_size + _INFLATION_SLACK):
            raise self.error(f"member {key!r} would expand from {info.compress_size:,} to "
                             f"{info.file_size:,} bytes")
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise self.error(f"member {key!r} has .npy format version {version}")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        try:
            found_shape, fortran_order, found_dtype = read_header(member)
        except (ValueError, SyntaxError, tokenize.TokenError, TypeError) as exc:
            # numpy parses the header's text as a Python literal: malformed text can fail
            # in its tokenizer or parser as well as in its own checks
            raise self.error(f"member {key!r} has an unreadable .npy header "
                             f"({type(exc).__name__})") from None
        if found_dtype.kind not in _ARRAY_KINDS or found_dtype.hasobject:
            raise self.error(f"member {key!r} has dtype {found_dtype}; only numbers, booleans "
                             "and strings are read")
        if dtype is not None and found_dtype != np.dtype(dtype):
            raise self.error(f"member {key!r} has dtype {found_dtype.str}, the header says "
                             f"{dtype}")
        if kind is not None and found_dtype.kind != kind:
            raise self.error(f"member {key!r} has dtype {found_dtype.str}, expected kind {kind!r}")
        if shape is not None and tuple(found_shape) != tuple(shape):
            raise self.error(f"member {key!r} has shape {found_shape}, the header says "
                             f"{tuple(shape)}")
        if dtype is not None and fortran_order:
            raise self.error(f"member {key!r} is in Fortran order; save_model writes C order")
        n_bytes = int(np.prod(found_shape, dtype=object)) * found_dtype.itemsize
        header_bytes = member.tell()
        if header_bytes + n_bytes != info.file_size:
            raise self.error(f"member {key!r} holds {info.file_size - header_bytes:,} data bytes "
                             f"but its shape {found_shape} needs {n_bytes:,}")
        if limit is not None and n_bytes > limit:
            raise self.error(f"member {key!r} is larger than {limit:,} bytes")
        values = np.empty(found_shape, dtype=found_dtype, order="F" if fortran_order else "C")
        buffer = memoryview(values.reshape(-1, order="A").view(np.uint8))
        done = 0
        while done < n_bytes:
            got = member.readinto(buffer[done:])
            if not got:
                raise self.error(f"member {key!r} is truncated")
            done += got
        if member.read(1):  # reading to the end also checks the member's CRC
            raise self.error(f"member {key!r} has trailing bytes")
        if key != META:
            self.digests[key] = _member_digest(key, values)
        return values

    def check_digest(self, meta: dict) -> None:
        """Refuse a file whose header or members changed since it was saved.

        Call it once every member the header names has been read.
        """
        if content_digest(meta, self.digests) != meta.get(DIGEST):
            raise ModelFileError(
                f"{self.path} was edited after it was saved: its content no longer matches "
                "the digest save_model wrote (re-save the model instead of editing the file)."
            )
