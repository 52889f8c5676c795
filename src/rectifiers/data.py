"""MNIST-1D, generated locally and cached on disk.

MNIST-1D (Greydanus and Kobak, 2024) is a one-dimensional stand-in for MNIST: each example is
a length-40 signal made from one of ten digit-like templates by padding, shearing, scaling,
translating and adding noise. It is small enough to train dozens of networks on a laptop CPU in
seconds, yet a linear model clearly underfits it (about 32% test accuracy) while an MLP reaches
about 68%, so the choice of activation function is visible in the results.

The data are generated with ``mnist1d.data.make_dataset``, never downloaded. Generation takes
about a second, so the raw arrays are cached under the build folder (see :func:`cache_dir`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import random
import tempfile
import warnings
from pathlib import Path

import torch

from rectifiers._validation import (
    _describe,
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_real,
)

__all__ = ["MNIST1D", "NUM_CLASSES", "cache_dir", "load_mnist1d"]

#: Number of classes (digits) in MNIST-1D.
NUM_CLASSES = 10

# Bump when the cached file's layout changes, so that old files are not misread.
_CACHE_FORMAT = 1

# The standard MNIST-1D settings (mnist1d.data.get_dataset_args without the download URL),
# passed to the generator explicitly: the cache key then holds every argument, and a cache hit
# does not import mnist1d, which imports matplotlib.pyplot and requests (seconds on a busy CPU).
_STANDARD_ARGS = {
    "num_samples": 5000,
    "train_split": 0.8,
    "template_len": 12,
    "padding": [36, 60],
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 2e-2,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
    "seed": 42,
}
_SPLITS = ("x", "y", "x_test", "y_test")


@dataclasses.dataclass(frozen=True, eq=False, repr=False, slots=True)
class MNIST1D:
    """A standardised MNIST-1D train/test split (immutable).

    The inputs are standardised with the **training set's** statistics: one mean and one
    standard deviation over all training values, shared by every position. A single pair (not
    one per position) keeps the signals' shapes intact, which matters because the digits are
    translated along the sequence; using only training statistics keeps the test set unseen.

    Args:
        x_train: training inputs, floating point, shape :math:`(N_\\text{train}, L)` (or
            :math:`(N_\\text{train}, 1, L)` for the ``channels`` view).
        y_train: training labels, ``torch.int64``, shape :math:`(N_\\text{train},)`, values in
            ``0..9``.
        x_test: test inputs, same layout as ``x_train``.
        y_test: test labels, same layout as ``y_train``.
        mean: the training-set mean that was subtracted.
        std: the training-set standard deviation that was divided by.

    Raises:
        TypeError: if a field has the wrong type or dtype.
        ValueError: if shapes disagree or a label is outside ``0..9``.

    Example:
        >>> data = load_mnist1d()
        >>> data.x_train.shape, data.x_test.shape
        (torch.Size([4000, 40]), torch.Size([1000, 40]))
        >>> data.channels.x_train.shape
        torch.Size([4000, 1, 40])
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        x_train, x_test = self.x_train, self.x_test
        for split, x, y in (("train", x_train, self.y_train), ("test", x_test, self.y_test)):
            x_name, y_name = f"x_{split}", f"y_{split}"
            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                raise TypeError(
                    f"{x_name} must be a floating-point torch.Tensor, got {_describe(x)}"
                )
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
                raise TypeError(f"{y_name} must be a torch.int64 tensor, got {_describe(y)}")
            if x.dim() not in (2, 3) or y.dim() != 1 or x.shape[0] != y.shape[0] or len(y) == 0:
                raise ValueError(
                    f"{x_name} must have shape (N, L) or (N, 1, L) and {y_name} shape (N,) with "
                    f"the same N > 0, got {tuple(x.shape)} and {tuple(y.shape)}"
                )
            if y.min() < 0 or y.max() >= NUM_CLASSES:
                raise ValueError(
                    f"{y_name} must hold class indices in 0..{NUM_CLASSES - 1}, "
                    f"got values in {int(y.min())}..{int(y.max())}"
                )
        if x_train.dtype != x_test.dtype:
            raise TypeError(
                f"x_train and x_test must have the same dtype, got {x_train.dtype} "
                f"and {x_test.dtype}"
            )
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(
                "x_train and x_test must have the same example shape, got "
                f"{tuple(x_train.shape[1:])} and {tuple(x_test.shape[1:])}"
            )
        # frozen: the normalised numbers are set the way dataclasses' own __init__ sets fields.
        object.__setattr__(self, "mean", check_real("mean", self.mean))
        if check_real("std", self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std!r}")
        object.__setattr__(self, "std", float(self.std))

    def __repr__(self) -> str:
        return (
            f"MNIST1D(train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"dtype={self.x_train.dtype})"
        )

    def _replace(self, **changes: torch.Tensor) -> MNIST1D:
        return dataclasses.replace(self, **changes)

    @property
    def num_features(self) -> int:
        """Length of one signal (40 by default)."""
        return self.x_train.shape[-1]

    @property
    def channels(self) -> MNIST1D:
        """The same data with inputs shaped :math:`(N, 1, L)`, as ``torch.nn.Conv1d`` expects.

        The new tensors are views: no data are copied.
        """
        if self.x_train.dim() == 3:
            return self
        return self._replace(x_train=self.x_train.unsqueeze(1), x_test=self.x_test.unsqueeze(1))

    def subset(self, n_train: int, n_test: int) -> MNIST1D:
        """The first ``n_train`` training and ``n_test`` test examples (for quick checks).

        The standardisation statistics are kept, not recomputed.

        Args:
            n_train: number of training examples to keep, ``1 <= n_train <= N_train``.
            n_test: number of test examples to keep, ``1 <= n_test <= N_test``.

        Returns:
            A new ``MNIST1D`` whose tensors are views of this one's.

        Raises:
            TypeError: if a count is not an int.
            ValueError: if a count is not positive or is larger than the split.
        """
        for name, n, total in (
            ("n_train", n_train, len(self.y_train)),
            ("n_test", n_test, len(self.y_test)),
        ):
            if check_positive_int(name, n) > total:
                raise ValueError(f"{name} must be at most {total}, got {n}")
        return self._replace(
            x_train=self.x_train[:n_train],
            y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test],
            y_test=self.y_test[:n_test],
        )


def _repo_root() -> Path | None:
    # With the editable (src layout) install this file is <root>/src/rectifiers/data.py and the
    # book's _config.yml sits in <root>; an installed wheel has no _config.yml above it.
    for folder in Path(__file__).resolve().parents:
        if (folder / "_config.yml").is_file():
            return folder
    return None


def cache_dir():
    """The folder where generated datasets are cached.

    In order of precedence: the environment variable ``RECTIFIERS_CACHE_DIR``; else
    ``<repository root>/_build/cache`` when the package is used from its repository (the root is
    the nearest folder above this file that holds ``_config.yml``), so that ``make clean``
    removes it; else ``~/.cache/rectifiers``. The folder is not created here.

    Returns:
        The cache folder as a ``pathlib.Path``.

    Example:
        >>> cache_dir().parts[-2:]  # from a checkout, without RECTIFIERS_CACHE_DIR
        ('_build', 'cache')
    """
    override = os.environ.get("RECTIFIERS_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    root = _repo_root()
    if root is not None:
        return root / "_build" / "cache"
    return Path.home() / ".cache" / "rectifiers"


def _dataset_args(seed: int, num_samples: int, train_split: float) -> dict:
    return {**_STANDARD_ARGS, "seed": seed, "num_samples": num_samples, "train_split": train_split}


def _cache_key(args: dict) -> dict:
    # The package version too: a new mnist1d may generate different data from the same args.
    return {"format": _CACHE_FORMAT, "mnist1d": importlib.metadata.version("mnist1d"), "args": args}


def _generate(args: dict) -> dict[str, torch.Tensor]:
    import numpy as np
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset reseeds Python's and NumPy's global generators; restore them so that
    # loading data does not change the random numbers a notebook draws afterwards.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {name: torch.from_numpy(np.ascontiguousarray(raw[name])) for name in _SPLITS}


def _expected_sizes(args: dict) -> tuple[int, int]:
    # mnist1d makes num_samples // 10 examples per class, then splits at int(total * split).
    total = (args["num_samples"] // NUM_CLASSES) * NUM_CLASSES
    n_train = int(total * args["train_split"])
    return n_train, total - n_train


def _read_cache(path: Path, key: dict, args: dict) -> dict[str, torch.Tensor] | None:
    """The cached arrays, or ``None`` if the file is missing, unreadable or not what we expect."""
    try:
        stored = torch.load(path, weights_only=True)
    except FileNotFoundError:
        return None
    except Exception:  # a truncated or foreign file: regenerate rather than fail
        return None
    n_train, n_test = _expected_sizes(args)
    length = args["final_seq_length"]
    expected = {
        "x": (n_train, length),
        "y": (n_train,),
        "x_test": (n_test, length),
        "y_test": (n_test,),
    }
    if not isinstance(stored, dict) or stored.get("key") != json.dumps(key, sort_keys=True):
        return None
    arrays = stored.get("arrays")
    if not isinstance(arrays, dict):
        return None
    for name, shape in expected.items():
        value = arrays.get(name)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            return None
    return arrays


def _write_cache(path: Path, key: dict, arrays: dict[str, torch.Tensor]) -> None:
    # Several notebook kernels may generate the same file at once: each writes its own temporary
    # file in the same folder and renames it into place, which is atomic, so no reader ever sees
    # a half-written file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is not secret
            with os.fdopen(fd, "wb") as handle:
                torch.save({"key": json.dumps(key, sort_keys=True), "arrays": arrays}, handle)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as error:
        warnings.warn(f"could not cache MNIST-1D in {path.parent}: {error}", stacklevel=3)


def load_mnist1d(
    seed: int = 42,
    num_samples: int = 5000,
    train_split: float = 0.8,
    *,
    dtype=torch.float32,
    use_cache: bool = True,
) -> MNIST1D:
    r"""Generate (or load from the cache) MNIST-1D and standardise it.

    The defaults reproduce the standard MNIST-1D: 4000 training and 1000 test signals of length
    40, ten classes, ``seed=42``. Inputs are standardised with the training set's mean
    :math:`\mu` and standard deviation :math:`\sigma` (one of each over all training values):

    .. math::
        x \mapsto \frac{x - \mu}{\sigma}.

    Loading does not change Python's, NumPy's or PyTorch's global random state.

    Args:
        seed: seed of the generator, an int in ``0 .. 2**32 - 1``.
        num_samples: total number of examples, a positive multiple of 10 (MNIST-1D makes
            ``num_samples // 10`` examples per class).
        train_split: fraction of the examples used for training, in :math:`(0, 1)`; both splits
            must be non-empty.
        dtype: floating dtype of the inputs (``torch.float32`` or ``torch.float64``).
        use_cache: read and write the on-disk cache (see :func:`cache_dir`). A missing or
            corrupt cache file is regenerated; if the folder cannot be written, a warning is
            issued and the data are returned anyway.

    Returns:
        An ``MNIST1D`` with inputs of dtype ``dtype`` and ``torch.int64`` labels.

    Raises:
        TypeError: if an argument has the wrong type.
        ValueError: if an argument has a wrong value.

    Example:
        >>> data = load_mnist1d()
        >>> data.x_train.dtype, data.y_train.dtype
        (torch.float32, torch.int64)
        >>> abs(float(data.x_train.mean())) < 1e-6, abs(float(data.x_train.std()) - 1) < 1e-3
        (True, True)
    """
    if check_non_negative_int("seed", seed) >= 2**32:
        raise ValueError(f"seed must be less than 2**32, got {seed}")
    check_positive_int("num_samples", num_samples)
    if num_samples % NUM_CLASSES:
        raise ValueError(f"num_samples must be a multiple of {NUM_CLASSES}, got {num_samples}")
    check_real("train_split", train_split)
    if not 0 < train_split < 1:
        raise ValueError(f"train_split must lie strictly between 0 and 1, got {train_split!r}")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {type(dtype).__name__} {dtype!r}")
    check_choice("dtype", str(dtype), ("torch.float32", "torch.float64"))
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be a bool, got {type(use_cache).__name__} {use_cache!r}")

    args = _dataset_args(seed, num_samples, float(train_split))
    n_train, n_test = _expected_sizes(args)
    if n_train == 0 or n_test == 0:
        raise ValueError(
            f"num_samples={num_samples} with train_split={train_split} leaves an empty split "
            f"({n_train} train, {n_test} test examples)"
        )

    key = _cache_key(args)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"mnist1d-{digest}.pt"
    arrays = _read_cache(path, key, args) if use_cache else None
    if arrays is None:
        arrays = _generate(args)
        if use_cache:
            _write_cache(path, key, arrays)

    # Statistics in float64 so that float32 data come out with mean 0 and std 1 to print
    # precision; correction=0 is the plain (population) standard deviation.
    x_train = arrays["x"].to(torch.float64)
    mean = float(x_train.mean())
    std = float(x_train.std(correction=0))
    return MNIST1D(
        x_train=((x_train - mean) / std).to(dtype),
        y_train=arrays["y"].to(torch.int64),
        x_test=((arrays["x_test"].to(torch.float64) - mean) / std).to(dtype),
        y_test=arrays["y_test"].to(torch.int64),
        mean=mean,
        std=std,
    )
