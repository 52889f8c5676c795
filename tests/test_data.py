"""rectifiers.data: MNIST-1D generated locally, standardised with training statistics, cached."""

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from doctest_helpers import assert_examples_pass
from mnist1d.data import get_dataset_args, make_dataset

import rectifiers.data as data_module
from rectifiers.data import MNIST1D, NUM_CLASSES, cache_dir, load_mnist1d

# Small datasets keep generation in the tens of milliseconds.
SMALL = {"seed": 3, "num_samples": 200}


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECTIFIERS_CACHE_DIR", str(tmp_path))
    return tmp_path


def raw(seed=42, num_samples=5000, train_split=0.8):
    args = get_dataset_args()
    args.seed, args.num_samples, args.train_split = seed, num_samples, train_split
    return make_dataset(args)


@pytest.fixture(scope="module")
def standard():
    return load_mnist1d()


def test_default_split_shapes_dtypes_and_labels(standard):
    assert standard.x_train.shape == (4000, 40) and standard.x_test.shape == (1000, 40)
    assert standard.x_train.dtype == standard.x_test.dtype == torch.float32
    assert standard.y_train.dtype == standard.y_test.dtype == torch.int64
    assert standard.y_train.shape == (4000,) and standard.y_test.shape == (1000,)
    assert set(standard.y_train.tolist()) == set(range(NUM_CLASSES))
    assert standard.num_features == 40


def test_is_mnist1d_standardised_with_training_statistics(tmp_cache):
    # The same code path as the default 5000 examples, at a tenth of the generation time.
    standard = load_mnist1d(seed=42, num_samples=500)
    reference = raw(seed=42, num_samples=500)
    x, x_test = torch.from_numpy(reference["x"]), torch.from_numpy(reference["x_test"])
    mean, std = x.mean().item(), x.std(correction=0).item()
    assert standard.mean == pytest.approx(mean, rel=1e-12)
    assert standard.std == pytest.approx(std, rel=1e-12)
    torch.testing.assert_close(standard.x_train, ((x - mean) / std).float())
    # The test set uses the training statistics, so it is not exactly centred itself.
    torch.testing.assert_close(standard.x_test, ((x_test - mean) / std).float())
    assert abs(x_test.mean().item() - mean) > 1e-4
    assert torch.equal(standard.y_train, torch.from_numpy(reference["y"]))
    assert torch.equal(standard.y_test, torch.from_numpy(reference["y_test"]))
    assert abs(standard.x_train.double().mean().item()) < 1e-6
    assert standard.x_train.double().std(correction=0).item() == pytest.approx(1.0, abs=1e-6)


def test_float64(tmp_cache):
    data = load_mnist1d(**SMALL, dtype=torch.float64)
    assert data.x_train.dtype == data.x_test.dtype == torch.float64
    assert torch.equal(data.x_train.float(), load_mnist1d(**SMALL).x_train)


def test_arguments_reach_the_generator(tmp_cache):
    data = load_mnist1d(seed=5, num_samples=300, train_split=0.6)
    reference = raw(seed=5, num_samples=300, train_split=0.6)
    assert data.x_train.shape == (180, 40) and data.x_test.shape == (120, 40)
    assert torch.equal(data.y_test, torch.from_numpy(reference["y_test"]))


def test_global_random_state_is_untouched(tmp_cache):
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    load_mnist1d(**SMALL, use_cache=False)  # make_dataset reseeds numpy and random
    after = np.random.rand(), random.random(), torch.rand(()).item()
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    assert after == (np.random.rand(), random.random(), torch.rand(()).item())


def test_cache_is_written_then_read_without_generating(tmp_cache, monkeypatch):
    first = load_mnist1d(**SMALL)
    files = list(tmp_cache.glob("mnist1d-*.pt"))
    assert len(files) == 1

    def no_generation(args):
        raise AssertionError("generated although cached")

    monkeypatch.setattr(data_module, "_generate", no_generation)
    second = load_mnist1d(**SMALL)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_test, second.y_test)


@pytest.mark.parametrize(
    "other", [{"seed": 4}, {"num_samples": 300}, {"train_split": 0.7}], ids=lambda d: next(iter(d))
)
def test_cache_key_includes_every_argument(tmp_cache, other):
    base = load_mnist1d(**SMALL)
    changed = load_mnist1d(**{**SMALL, **other})
    assert len(list(tmp_cache.glob("mnist1d-*.pt"))) == 2
    assert torch.equal(changed.x_train, load_mnist1d(**{**SMALL, **other}, use_cache=False).x_train)
    assert base.x_train.shape != changed.x_train.shape or not torch.equal(
        base.x_train, changed.x_train
    )


@pytest.mark.parametrize(
    "content", [b"", b"not a torch file", None], ids=["empty", "junk", "foreign"]
)
def test_corrupt_or_foreign_cache_file_is_regenerated(tmp_cache, content):
    fresh = load_mnist1d(**SMALL)
    (path,) = tmp_cache.glob("mnist1d-*.pt")
    if content is None:  # a valid torch file with the wrong content
        torch.save({"key": "something else", "arrays": {}}, path)
    else:
        path.write_bytes(content)
    again = load_mnist1d(**SMALL)
    assert torch.equal(fresh.x_train, again.x_train)
    # ... and the file was rewritten correctly.
    key = data_module._cache_key(
        data_module._dataset_args(SMALL["seed"], SMALL["num_samples"], 0.8)
    )
    assert data_module._read_cache(path, key, key["args"]) is not None


def test_cache_file_with_wrong_shapes_is_regenerated(tmp_cache):
    fresh = load_mnist1d(**SMALL)
    (path,) = tmp_cache.glob("mnist1d-*.pt")
    stored = torch.load(path, weights_only=True)
    stored["arrays"]["x"] = stored["arrays"]["x"][:5]
    torch.save(stored, path)
    assert torch.equal(load_mnist1d(**SMALL).x_train, fresh.x_train)
    stored["arrays"] = "no arrays"
    torch.save(stored, path)
    assert torch.equal(load_mnist1d(**SMALL).x_train, fresh.x_train)


def test_cache_write_is_atomic_rename_of_a_complete_file(tmp_cache, monkeypatch):
    renames = []
    real_replace = data_module.os.replace

    def checking_replace(src, dst):
        src, dst = Path(src), Path(dst)
        # The temporary file sits next to the target (same file system: rename is atomic) and
        # is complete before it is renamed into place.
        assert src.parent == dst.parent and src != dst
        assert isinstance(torch.load(src, weights_only=True)["arrays"]["x"], torch.Tensor)
        renames.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(data_module.os, "replace", checking_replace)
    load_mnist1d(**SMALL)
    assert len(renames) == 1 and renames[0].is_file()
    assert [p.name for p in tmp_cache.iterdir()] == [renames[0].name]  # no temporary left


def test_failed_cache_write_warns_cleans_up_and_still_returns_data(tmp_cache, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(data_module.os, "replace", failing_replace)
    with pytest.warns(UserWarning, match="could not cache MNIST-1D"):
        data = load_mnist1d(**SMALL)
    assert data.x_train.shape == (160, 40)
    assert list(tmp_cache.iterdir()) == []


def test_unwritable_cache_folder_warns_and_returns_data(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RECTIFIERS_CACHE_DIR", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="could not cache"):
        data = load_mnist1d(**SMALL)
    assert data.x_test.shape == (40, 40)


def test_use_cache_false_neither_reads_nor_writes(tmp_cache):
    load_mnist1d(**SMALL, use_cache=False)
    assert list(tmp_cache.iterdir()) == []


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("RECTIFIERS_CACHE_DIR", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"
    monkeypatch.delenv("RECTIFIERS_CACHE_DIR")
    root = Path(data_module.__file__).resolve().parents[2]
    assert (root / "_config.yml").is_file()
    assert cache_dir() == root / "_build" / "cache"
    monkeypatch.setattr(data_module, "_repo_root", lambda: None)
    assert cache_dir() == Path.home() / ".cache" / "rectifiers"


def test_repo_root_is_none_outside_a_book(monkeypatch, tmp_path):
    fake = tmp_path / "site-packages" / "rectifiers" / "data.py"
    monkeypatch.setattr(data_module, "__file__", str(fake))
    assert data_module._repo_root() is None


def test_channels_view(standard):
    channels = standard.channels
    assert channels.x_train.shape == (4000, 1, 40) and channels.x_test.shape == (1000, 1, 40)
    assert channels.x_train.data_ptr() == standard.x_train.data_ptr()  # a view, no copy
    assert channels.y_train is standard.y_train and channels.mean == standard.mean
    assert channels.channels is channels
    assert channels.num_features == 40


def test_subset(standard):
    small = standard.subset(10, 5)
    assert torch.equal(small.x_train, standard.x_train[:10])
    assert torch.equal(small.y_test, standard.y_test[:5])
    assert (small.mean, small.std) == (standard.mean, standard.std)
    with pytest.raises(ValueError, match="n_train must be at most 4000"):
        standard.subset(4001, 5)
    with pytest.raises(ValueError, match="n_test must be positive"):
        standard.subset(10, 0)
    with pytest.raises(TypeError, match="n_train must be an int"):
        standard.subset(10.0, 5)


def test_is_immutable(standard):
    # A frozen dataclass: dataclasses.FrozenInstanceError is an AttributeError.
    with pytest.raises(AttributeError, match="cannot assign to field 'x_train'"):
        standard.x_train = standard.x_test
    assert "MNIST1D(train=(4000, 40)" in repr(standard)


def tensors(n=6, m=4, length=40):
    return (
        torch.zeros(n, length),
        torch.zeros(n, dtype=torch.int64),
        torch.zeros(m, length),
        torch.zeros(m, dtype=torch.int64),
    )


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({0: [[0.0] * 40] * 6}, TypeError, "x_train must be a floating-point torch.Tensor"),
        ({0: torch.zeros(6, 40, dtype=torch.int64)}, TypeError, "x_train must be a floating"),
        ({1: torch.zeros(6, dtype=torch.int32)}, TypeError, "y_train must be a torch.int64"),
        ({3: [0, 1, 2, 3]}, TypeError, "y_test must be a torch.int64"),
        ({1: torch.zeros(5, dtype=torch.int64)}, ValueError, "same N > 0"),
        ({0: torch.zeros(6)}, ValueError, "must have shape"),
        ({0: torch.zeros(0, 40), 1: torch.zeros(0, dtype=torch.int64)}, ValueError, "N > 0"),
        ({1: torch.full((6,), 10)}, ValueError, r"class indices in 0..9"),
        ({3: torch.full((4,), -1)}, ValueError, r"class indices in 0..9"),
        ({2: torch.zeros(4, 39)}, ValueError, "same example shape"),
        ({2: torch.zeros(4, 40, dtype=torch.float64)}, TypeError, "same dtype"),
        ({4: True}, TypeError, "mean must be a real number"),
        ({5: 0.0}, ValueError, "std must be positive"),
        ({5: float("nan")}, ValueError, "std must be finite"),
    ],
)
def test_mnist1d_rejects_bad_fields(change, error, match):
    fields = [*tensors(), 0.0, 1.0]
    for index, value in change.items():
        fields[index] = value
    with pytest.raises(error, match=match):
        MNIST1D(*fields)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"seed": -1}, ValueError, "seed must be non-negative"),
        ({"seed": 2**32}, ValueError, "seed must be less than 2"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
        ({"seed": True}, TypeError, "seed must be an int"),
        ({"num_samples": 0}, ValueError, "num_samples must be positive"),
        ({"num_samples": 205}, ValueError, "num_samples must be a multiple of 10"),
        ({"num_samples": "5000"}, TypeError, "num_samples must be an int"),
        ({"train_split": 0.0}, ValueError, "strictly between 0 and 1"),
        ({"train_split": 1}, ValueError, "strictly between 0 and 1"),
        ({"train_split": "0.8"}, TypeError, "train_split must be a real number"),
        ({"train_split": float("inf")}, ValueError, "train_split must be finite"),
        ({"num_samples": 10, "train_split": 0.05}, ValueError, "leaves an empty split"),
        ({"dtype": torch.int64}, ValueError, "dtype must be one of"),
        ({"dtype": "float32"}, TypeError, "dtype must be a torch.dtype"),
        ({"use_cache": 1}, TypeError, "use_cache must be a bool"),
    ],
)
def test_load_rejects_bad_arguments(tmp_cache, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_mnist1d(**kwargs)


def test_docstring_examples(monkeypatch):
    monkeypatch.delenv("RECTIFIERS_CACHE_DIR", raising=False)
    assert_examples_pass(data_module)


def test_standard_arguments_are_mnist1d_defaults():
    defaults = get_dataset_args(as_dict=True)
    del defaults["url"]  # only used for downloading, which load_mnist1d never does
    assert defaults == data_module._STANDARD_ARGS


def test_cache_hit_does_not_import_mnist1d(tmp_cache, monkeypatch):
    load_mnist1d(**SMALL)
    # None in sys.modules makes any import of these modules fail.
    for name in ("mnist1d", "mnist1d.data", "mnist1d.utils"):
        monkeypatch.setitem(sys.modules, name, None)
    assert load_mnist1d(**SMALL).x_train.shape == (160, 40)
    with pytest.raises(ImportError):
        load_mnist1d(**SMALL, use_cache=False)  # the check above can fail
