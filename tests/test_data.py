"""Tests of tflbayes.data: bundled data sets, the user's .npz files, held-out classes, OOD kinds."""
import numpy as np
import pytest

from tflbayes import data
from tflbayes.data import DATASETS, OOD_KINDS, Dataset, load, ood
from tflbayes.errors import InvalidInputError


@pytest.fixture(scope="module")
def mnist():
    return load("mnist")


def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.uniform(size=(30, 6, 6, 1)).astype(np.float32),
        "y_train": np.arange(30) % 3,
        "x_test": rng.uniform(size=(12, 6, 6, 1)).astype(np.float32),
        "y_test": np.arange(12) % 3,
    }
    for k, v in overrides.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez(path, **arrays)
    return path


# --------------------------------------------------------------------------- bundled


def test_constants():
    assert DATASETS == ("digits", "mnist")
    assert OOD_KINDS == ("noise", "rotate", "heldout", "other")
    assert set(data.__all__) == {"Dataset", "load", "DATASETS", "ood", "OOD_KINDS"}


def test_no_tensorflow_import():
    import ast
    import inspect

    import tflbayes.data.datasets as datasets_mod
    import tflbayes.data.ood_protocols as ood_mod

    for mod in (data, datasets_mod, ood_mod):
        tree = ast.parse(inspect.getsource(mod))
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"tensorflow", "tf_keras", "tensorflow_probability"}, mod.__name__


@pytest.mark.parametrize(
    "name, total, hw, test_size",
    [("digits", 1797, (8, 8), 360), ("mnist", 5000, (28, 28), 1000)],
)
def test_bundled_shapes_dtypes_ranges(name, total, hw, test_size, request):
    ds = request.getfixturevalue(name)
    assert isinstance(ds, Dataset)
    assert ds.name == name
    assert len(ds.x_train) + len(ds.x_test) == total
    assert len(ds.x_test) == test_size
    assert ds.x_train.shape == (total - test_size, *hw, 1)
    assert ds.x_test.shape == (test_size, *hw, 1)
    assert ds.input_shape == (*hw, 1)
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.float32
        assert x.min() == 0.0 and x.max() == 1.0
    for y in (ds.y_train, ds.y_test):
        assert y.dtype == np.int64
        assert set(np.unique(y)) == set(range(10))
    assert ds.num_classes == 10
    assert ds.class_names == [str(i) for i in range(10)]
    assert ds.holdout_classes == () and ds.x_heldout is None
    assert "Dataset(name=" in repr(ds) and "array" not in repr(ds)


def test_digits_scaling_matches_sklearn(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    # every test image is one of sklearn's images divided by 16
    flat = (raw.images / 16.0).reshape(len(raw.images), -1)
    lookup = {row.tobytes(): lab for row, lab in zip(flat.astype(np.float32), raw.target)}
    for x, y in zip(digits.x_test[:20], digits.y_test[:20]):
        assert lookup[x.reshape(-1).tobytes()] == y


def test_split_is_stratified(digits, mnist):
    # mnist has exactly 500 per class: a 20 % stratified test split has exactly 100 per class.
    np.testing.assert_array_equal(np.bincount(mnist.y_test), np.full(10, 100))
    np.testing.assert_array_equal(np.bincount(mnist.y_train), np.full(10, 400))
    # digits: per-class test counts within 1 of 20 % of the class size
    full = np.bincount(np.concatenate([digits.y_train, digits.y_test]))
    assert np.all(np.abs(np.bincount(digits.y_test) - 0.2 * full) <= 1.0)


def test_split_is_deterministic_and_seeded(digits):
    again = load("digits")
    np.testing.assert_array_equal(again.x_test, digits.x_test)
    np.testing.assert_array_equal(again.y_train, digits.y_train)
    other = load("digits", seed=1)
    assert not np.array_equal(other.y_test, digits.y_test)
    smaller = load("digits", test_fraction=0.5)
    assert abs(len(smaller.x_test) - 1797 / 2) <= 1


def test_user_mutation_does_not_leak_into_cache():
    ds = load("digits")
    ds.x_train[:] = -1.0
    assert load("digits").x_train.min() == 0.0


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 2, "0.2", True])
def test_bad_test_fraction(bad):
    with pytest.raises(InvalidInputError, match="test_fraction"):
        load("digits", test_fraction=bad)


@pytest.mark.parametrize("bad", ["cifar10", "Digits", "", 3])
def test_unknown_name_lists_valid_names(bad):
    with pytest.raises(InvalidInputError) as info:
        load(bad)
    msg = str(info.value)
    assert "'digits'" in msg and "'mnist'" in msg and ".npz" in msg
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- hold-out


def test_holdout_by_index_and_name_agree(digits):
    a = load("digits", holdout_classes=[3, 7])
    b = load("digits", holdout_classes=["7", "3"])
    for k in ("x_train", "y_train", "x_test", "y_test", "x_heldout"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert a.holdout_classes == ("3", "7")
    assert a.class_names == ["0", "1", "2", "4", "5", "6", "8", "9"]
    assert a.num_classes == 8


def test_holdout_removes_and_remaps(digits):
    held = (3, 7)
    ds = load("digits", holdout_classes=held)
    keep = [c for c in range(10) if c not in held]
    # labels are 0..7 and no held-out example is left in train or test
    assert set(np.unique(ds.y_train)) == set(range(8))
    assert set(np.unique(ds.y_test)) == set(range(8))
    in_train = np.isin(digits.y_train, held)
    in_test = np.isin(digits.y_test, held)
    np.testing.assert_array_equal(ds.x_train, digits.x_train[~in_train])
    np.testing.assert_array_equal(ds.x_test, digits.x_test[~in_test])
    # remapping keeps the original order: new label i is original class keep[i]
    np.testing.assert_array_equal(np.asarray(keep)[ds.y_train], digits.y_train[~in_train])
    np.testing.assert_array_equal(np.asarray(keep)[ds.y_test], digits.y_test[~in_test])
    # the OOD set is exactly the test inputs of the held-out classes
    np.testing.assert_array_equal(ds.x_heldout, digits.x_test[in_test])
    assert ds.x_heldout.dtype == np.float32 and ds.x_heldout.shape[1:] == (8, 8, 1)
    # none of the held-out images is in train
    train_rows = {r.tobytes() for r in ds.x_train.reshape(len(ds.x_train), -1)}
    assert not any(r.tobytes() in train_rows for r in ds.x_heldout.reshape(len(ds.x_heldout), -1))


def test_holdout_single_class_and_empty_list():
    ds = load("digits", holdout_classes=9)
    assert ds.holdout_classes == ("9",) and ds.num_classes == 9
    none = load("digits", holdout_classes=[])
    assert none.holdout_classes == () and none.x_heldout is None and none.num_classes == 10


@pytest.mark.parametrize("bad", [[10], [-1], ["ten"], [True], [1.5], list(range(9)), 3.0])
def test_bad_holdout_classes(bad):
    with pytest.raises(InvalidInputError, match="holdout_classes"):
        load("digits", holdout_classes=bad)


# --------------------------------------------------------------------------- user .npz


def test_npz_round_trip(tmp_path):
    path = _write_npz(tmp_path / "toy.npz", class_names=np.array(["cat", "dog", "eel"]))
    ds = load(str(path))
    assert ds.name == "toy"
    assert ds.x_train.shape == (30, 6, 6, 1) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int64
    assert ds.class_names == ["cat", "dog", "eel"]
    # a pathlib.Path works too, and holding out by name uses the user's names
    held = load(path, holdout_classes=["dog"])
    assert held.class_names == ["cat", "eel"] and held.holdout_classes == ("dog",)
    assert set(np.unique(held.y_train)) == {0, 1}
    assert len(held.x_heldout) == 4


@pytest.mark.parametrize("shape", [(20, 5), (20, 4, 6)])
def test_npz_2d_3d_inputs_stay_as_given(tmp_path, shape):
    x = np.arange(np.prod(shape)).reshape(shape).astype(np.int32)
    path = _write_npz(tmp_path / "flat.npz", x_train=x, y_train=np.arange(20) % 2,
                      x_test=x[:6], y_test=np.arange(6) % 2)
    ds = load(path)
    assert ds.x_train.shape == shape and ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(ds.x_train, x.astype(np.float32))
    assert ds.num_classes == 2 and ds.class_names == ["0", "1"]


def test_npz_float_labels_that_are_integers_are_accepted(tmp_path):
    path = _write_npz(tmp_path / "f.npz", y_train=(np.arange(30) % 3).astype(np.float64))
    assert load(path).y_train.dtype == np.int64


_BAD_NPZ = {
    "missing key": (dict(y_test=None), "y_test"),
    "length mismatch": (dict(y_train=np.arange(29) % 3), "y_train"),
    "nan": (dict(x_test=np.full((12, 6, 6, 1), np.nan, np.float32)), "x_test"),
    "inf": (dict(x_train=np.full((30, 6, 6, 1), np.inf)), "x_train"),
    "fractional labels": (dict(y_test=np.full(12, 0.5)), "y_test"),
    "label out of range": (dict(y_test=np.arange(12) % 3 + 1, class_names=np.array(["a", "b", "c"])), "y_test"),
    "negative label": (dict(y_train=np.arange(30) % 3 - 1), "y_train"),
    "labels 2d": (dict(y_train=np.zeros((30, 1), np.int64)), "y_train"),
    "x 1d": (dict(x_train=np.zeros(30)), "x_train"),
    "x 5d": (dict(x_test=np.zeros((12, 1, 6, 6, 1))), "x_test"),
    "string inputs": (dict(x_train=np.array(["a"] * 30)), "x_train"),
    "shape mismatch": (dict(x_test=np.zeros((12, 5, 5, 1))), "x_test"),
    "one class": (dict(y_train=np.zeros(30, np.int64), y_test=np.zeros(12, np.int64)), "2 classes"),
    "class_names numeric": (dict(class_names=np.arange(3)), "class_names"),
}


@pytest.mark.parametrize("case", sorted(_BAD_NPZ))
def test_npz_bad_content_names_file_and_key(tmp_path, case):
    overrides, key = _BAD_NPZ[case]
    path = _write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(InvalidInputError) as info:
        load(path)
    assert "bad.npz" in str(info.value)
    assert key in str(info.value)


class _Evil:
    """Unpickling this creates a file: proof that pickle ran."""

    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    sentinel = tmp_path / "pickle_ran"
    evil = np.empty(12, dtype=object)
    evil[:] = [_Evil(str(sentinel))] * 12
    path = _write_npz(tmp_path / "evil.npz", y_test=evil)
    with pytest.raises(InvalidInputError) as info:
        load(path)
    assert "evil.npz" in str(info.value) and "y_test" in str(info.value)
    assert "pickle" in str(info.value)
    assert not sentinel.exists()


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "data.npz"
    with pytest.raises(InvalidInputError, match="nowhere"):
        load(str(missing))
    with pytest.raises(InvalidInputError, match="nowhere"):
        load(missing)


def test_corrupt_or_single_array_file(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"definitely not a zip archive")
    with pytest.raises(InvalidInputError, match="corrupt.npz"):
        load(corrupt)
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(InvalidInputError, match="single.npz"):
        load(single)


# --------------------------------------------------------------------------- OOD


@pytest.mark.parametrize("kind", ["noise", "rotate", "other"])
def test_ood_shapes_and_dtypes(digits, kind):
    x = ood(digits, kind)
    assert x.dtype == np.float32
    assert x.shape[1:] == digits.x_test.shape[1:]
    assert np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0
    assert len(x) == (len(digits.x_test) if kind != "other" else 1000)


def test_ood_noise_is_uniform_and_seeded(digits):
    a = ood(digits, "noise", seed=3)
    np.testing.assert_array_equal(a, ood(digits, "noise", seed=3))
    assert not np.array_equal(a, ood(digits, "noise", seed=4))
    assert abs(a.mean() - 0.5) < 0.01 and abs(a.var() - 1 / 12) < 0.005
    assert ood(digits, "noise", num=7).shape == (7, 8, 8, 1)


def test_ood_rotate_is_rot90(digits):
    r = ood(digits, "rotate")
    np.testing.assert_array_equal(r[5, :, :, 0], np.rot90(digits.x_test[5, :, :, 0]))
    # four quarter turns give the images back
    x = digits.x_test
    for _ in range(4):
        x = ood(Dataset("d", x, digits.y_test, x, digits.y_test, digits.class_names), "rotate")
    np.testing.assert_array_equal(x, digits.x_test)


def test_ood_num_subsamples_in_order(digits):
    sub = ood(digits, "rotate", num=10, seed=1)
    full = ood(digits, "rotate")
    rows = [int(np.flatnonzero((full == s).all(axis=(1, 2, 3)))[0]) for s in sub]
    assert len(sub) == 10 and rows == sorted(rows) and len(set(rows)) == 10
    with pytest.raises(InvalidInputError, match="num"):
        ood(digits, "rotate", num=361)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidInputError, match="num"):
            ood(digits, "noise", num=bad)


def test_ood_heldout(digits):
    with pytest.raises(InvalidInputError, match="holdout_classes"):
        ood(digits, "heldout")
    ds = load("digits", holdout_classes=[9])
    x = ood(ds, "heldout")
    np.testing.assert_array_equal(x, ds.x_heldout)
    assert x.shape == (int(np.sum(digits.y_test == 9)), 8, 8, 1)
    assert ood(ds, "heldout", num=5).shape == (5, 8, 8, 1)


def test_ood_other_digits_and_mnist(digits, mnist):
    small = ood(digits, "other")  # mnist test split shrunk to 8x8
    big = ood(mnist, "other")  # digits test split grown to 28x28
    assert small.shape == (1000, 8, 8, 1) and big.shape == (360, 28, 28, 1)
    assert big.dtype == small.dtype == np.float32
    assert 0.0 <= big.min() and big.max() <= 1.0
    # resized, not just cropped: the mean brightness survives zooming
    assert abs(big.mean() - digits.x_test.mean()) < 0.05
    assert abs(small.mean() - mnist.x_test.mean()) < 0.05


def test_ood_bad_kind_and_shapes(tmp_path, digits):
    with pytest.raises(InvalidInputError) as info:
        ood(digits, "gaussian")
    assert all(repr(k) in str(info.value) for k in OOD_KINDS)
    with pytest.raises(InvalidInputError, match="Dataset"):
        ood(digits.x_test, "noise")

    x = np.zeros((10, 4, 6, 1), np.float32)
    rect = load(_write_npz(tmp_path / "rect.npz", x_train=x, y_train=np.arange(10) % 2,
                           x_test=x, y_test=np.arange(10) % 2))
    with pytest.raises(InvalidInputError, match="square"):
        ood(rect, "rotate")
    assert ood(rect, "noise").shape == (10, 4, 6, 1)

    x2 = np.zeros((10, 5), np.float32)
    flat = load(_write_npz(tmp_path / "flat.npz", x_train=x2, y_train=np.arange(10) % 2,
                           x_test=x2, y_test=np.arange(10) % 2))
    with pytest.raises(InvalidInputError, match="1-channel"):
        ood(flat, "other")
    with pytest.raises(InvalidInputError, match="square"):
        ood(flat, "rotate")
    assert ood(flat, "noise").shape == (10, 5)
