"""fastmlp.data on the real files, on small hand-made IDX files, and against a real HTTP
server on 127.0.0.1 for the download path (no mocks of the loader itself)."""
from __future__ import annotations

import functools
import gzip
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from clirunner import STRICT, idx_bytes
from fastmlp import data
from fastmlp.errors import DataError

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO / "data" / "mnist"  # the repository's copy
FASHION_DIR = data.DEBIAN_FASHION_MNIST_DIR
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
FILE_NAMES = list(data.FILES.values())

# A developer without the data skips these; under .ci/run they run, and fail if it is missing.
needs_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir() and not STRICT,
                                   reason=f"{FASHION_DIR} missing (apt-get install dataset-fashion-mnist)")
needs_mnist = pytest.mark.skipif(not SHARED_MNIST.is_dir() and not STRICT,
                                 reason=f"{SHARED_MNIST} missing")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Never read or write the user's cache, never pick up an outside data dir or mirror."""
    monkeypatch.setenv("FASTMLP_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("FASTMLP_DATA_DIR", "FASTMLP_MIRROR"):
        monkeypatch.delenv(var, raising=False)


# --------------------------------------------------------------------------- helpers

def blank(*shape) -> np.ndarray:
    """Zero bytes of the given shape: an IDX file's contents where only the header matters."""
    return np.zeros(shape, np.uint8)


def write(path: Path, content: bytes, compress: bool = True) -> Path:
    path.write_bytes(gzip.compress(content, compresslevel=1) if compress else content)
    return path


def write_small_dataset(directory: Path, n_train=5, n_test=3, n_train_labels=None, labels=None):
    """The four files of a tiny dataset (28x28 images) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    n_train_labels = n_train if n_train_labels is None else n_train_labels
    rng = np.random.default_rng(0)
    train_labels = labels if labels is not None else rng.integers(0, 10, n_train_labels, dtype=np.uint8)
    write(directory / "train-images-idx3-ubyte.gz", idx_bytes(blank(n_train, 28, 28)))
    write(directory / "train-labels-idx1-ubyte.gz", idx_bytes(train_labels))
    write(directory / "t10k-images-idx3-ubyte.gz", idx_bytes(blank(n_test, 28, 28)))
    write(directory / "t10k-labels-idx1-ubyte.gz", idx_bytes(blank(n_test)))
    return directory


@pytest.fixture
def serve(tmp_path):
    """serve(directory) -> base URL of a real HTTP server on 127.0.0.1 serving it."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No machine-wide copies and no built-in (internet) mirrors: only FASTMLP_MIRROR."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data, "CLONE_MNIST_DIR", tmp_path / "no-clone-copy")
    for name, spec in data.REGISTRY.items():
        monkeypatch.setitem(data.REGISTRY, name, data.DatasetSpec(
            class_names=spec.class_names, sha256=spec.sha256, mirrors=()))
    return tmp_path / "cache"


def leftovers(directory: Path) -> list[str]:
    """Files in the cache that are not a complete, verified dataset file."""
    if not directory.exists():
        return []
    bad = []
    for path in directory.iterdir():
        expected = data.REGISTRY["mnist"].sha256.get(path.name)
        if expected is None or data.sha256_of_decompressed(path) != expected:
            bad.append(path.name)
    return bad


# --------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def fashion():
    return data.load_dataset("fashion_mnist", data_dir=FASHION_DIR, download=False)


@pytest.fixture(scope="module")
def mnist():
    return data.load_dataset("mnist", data_dir=SHARED_MNIST, download=False)


def check_layout(ds: data.Dataset):
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    for array in (ds.x_train, ds.y_train, ds.x_test, ds.y_test):
        assert array.dtype == np.uint8 and array.flags.c_contiguous
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    assert ds.y_test.max() == 9
    assert len(ds.class_names) == 10


@needs_fashion
def test_real_fashion_mnist(fashion):
    check_layout(fashion)
    assert fashion.name == "fashion_mnist"
    assert fashion.class_names == data.CLASS_NAMES["fashion_mnist"]
    assert fashion.class_names[9] == "Ankle boot"
    assert np.bincount(fashion.y_train).tolist() == [6000] * 10
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10


@needs_mnist
def test_real_mnist(mnist):
    check_layout(mnist)
    assert mnist.class_names == tuple("0123456789")
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS


@needs_mnist
def test_real_checksums_match_registry():
    for file_name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        assert (data.sha256_of_decompressed(SHARED_MNIST / file_name)
                == data.REGISTRY["mnist"].sha256[file_name])


@needs_fashion
def test_fashion_found_in_debian_dir_without_arguments():
    assert data.find_dataset_dir("fashion_mnist") == FASHION_DIR


@needs_mnist
def test_mnist_found_in_the_clone_without_arguments():
    assert data.find_dataset_dir("mnist") == SHARED_MNIST


def test_cache_comes_before_machine_copies(offline, monkeypatch, tmp_path):
    write_small_dataset(tmp_path / "debian")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "debian")
    assert data.find_dataset_dir("fashion_mnist") == tmp_path / "debian"
    cached = write_small_dataset(offline / "fashion_mnist")
    assert data.find_dataset_dir("fashion_mnist") == cached


def test_not_found_without_download_is_a_data_error(offline):
    with pytest.raises(DataError, match="mnist: dataset files not found"):
        data.load_dataset("mnist", download=False)


# --------------------------------------------------------------------------- explicit data dir

def test_explicit_dir_accepts_files_directly_or_in_a_subfolder(tmp_path):
    flat = write_small_dataset(tmp_path / "flat")
    assert data.find_dataset_dir("mnist", data_dir=flat) == flat
    nested = write_small_dataset(tmp_path / "nested" / "fashion-mnist")
    assert data.find_dataset_dir("fashion_mnist", data_dir=tmp_path / "nested") == nested
    ds = data.load_dataset("fashion_mnist", data_dir=str(tmp_path / "nested"))
    assert ds.x_train.shape == (5, 784) and ds.y_test.shape == (3,)


def test_explicit_dir_missing_a_file_names_it(tmp_path):
    directory = write_small_dataset(tmp_path / "d")
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        data.load_dataset("mnist", data_dir=directory)


def test_data_dir_env_is_explicit_too(tmp_path, monkeypatch):
    directory = write_small_dataset(tmp_path / "d")
    (directory / "train-images-idx3-ubyte.gz").unlink()
    monkeypatch.setenv("FASTMLP_DATA_DIR", str(directory))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data.load_dataset("mnist")  # must not fall back to a download


# --------------------------------------------------------------------------- read_idx

@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, compress):
    pixels = np.arange(2 * 3 * 4, dtype=np.uint8)
    path = write(tmp_path / ("x.gz" if compress else "x"), idx_bytes(pixels.reshape(2, 3, 4)),
                 compress)
    out = data.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out.ravel(), pixels)
    labels = data.read_idx(write(tmp_path / "y.gz", idx_bytes(np.array([1, 2, 9], np.uint8))))
    assert labels.tolist() == [1, 2, 9]


@pytest.mark.parametrize("content, message", [
    (idx_bytes(blank(4, 28, 28))[:-10], "truncated"),
    (idx_bytes(blank(4, 28, 28)) + b"\x00\x00", "trailing bytes"),
    (idx_bytes(blank(4, 28, 28), magic=0x802), "magic 0x00000802"),
    (idx_bytes(blank(5))[:6], "truncated IDX header"),
    (b"\x00\x00", "too short"),
])
def test_read_idx_rejects_bad_structure(tmp_path, content, message):
    path = write(tmp_path / "bad-idx1-ubyte.gz", content)
    with pytest.raises(DataError, match=message) as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_a_non_gzip_file_named_gz(tmp_path):
    path = write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(blank(5)), compress=False)
    with pytest.raises(DataError, match="corrupt gzip") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_a_cut_gzip_stream(tmp_path):
    noise = np.frombuffer(os.urandom(50 * 784), np.uint8).reshape(50, 28, 28)
    path = write(tmp_path / "x.gz", idx_bytes(noise))
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(DataError, match="truncated gzip") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz: file not found"):
        data.read_idx(tmp_path / "nope.gz")


def test_load_rejects_image_label_count_mismatch(tmp_path):
    directory = write_small_dataset(tmp_path / "d", n_train=5, n_train_labels=4)
    with pytest.raises(DataError, match="4 labels but .*train-images-idx3-ubyte.gz has 5 images") as info:
        data.load_dataset("mnist", data_dir=directory)
    assert "train-labels-idx1-ubyte.gz" in str(info.value)


def test_a_second_load_reads_the_decoded_copy_until_a_file_changes(tmp_path):
    directory = write_small_dataset(tmp_path / "d", labels=np.array([0, 1, 2, 3, 4], np.uint8))
    first = data.load_dataset("mnist", data_dir=directory)
    decoded = list((tmp_path / "cache" / "decoded").glob("*/y_train.npy"))
    assert len(decoded) == 1  # kept after the checked read
    again = data.load_dataset("mnist", data_dir=directory)
    assert np.array_equal(again.y_train, first.y_train) and again.x_train.shape == (5, 784)

    # a replaced file (other size and time) is read and checked again, not served stale
    write_small_dataset(directory, labels=np.array([9, 9, 9, 9, 9, 9], np.uint8), n_train=6)
    changed = data.load_dataset("mnist", data_dir=directory)
    assert list(changed.y_train) == [9] * 6
    write(directory / "train-labels-idx1-ubyte.gz", idx_bytes(np.array([0, 1, 2, 3, 4, 12], np.uint8)))
    with pytest.raises(DataError, match="label value 12"):
        data.load_dataset("mnist", data_dir=directory)


def test_load_rejects_out_of_range_labels(tmp_path):
    directory = write_small_dataset(tmp_path / "d", labels=np.array([0, 1, 12, 3, 4], np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: label value 12"):
        data.load_dataset("mnist", data_dir=directory)


def test_load_rejects_labels_where_images_belong(tmp_path):
    directory = write_small_dataset(tmp_path / "d")
    write(directory / "t10k-images-idx3-ubyte.gz", idx_bytes(blank(3)))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: expected 28x28 images"):
        data.load_dataset("mnist", data_dir=directory)


# --------------------------------------------------------------------------- download

@needs_mnist
def test_download_from_local_mirror(serve, offline, monkeypatch):
    monkeypatch.setenv("FASTMLP_MIRROR", serve(SHARED_MNIST))
    ds = data.load_dataset("mnist")
    assert ds.x_train.shape == (60000, 784)
    assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert sorted(p.name for p in (offline / "mnist").iterdir()) == sorted(FILE_NAMES)
    assert leftovers(offline / "mnist") == []
    # Now cached: found again without a download.
    assert data.find_dataset_dir("mnist") == offline / "mnist"


@needs_mnist
def test_download_falls_back_to_the_next_mirror(serve, tmp_path):
    empty = serve(tmp_path)  # serves nothing the loader wants -> 404s
    good_dir = tmp_path / "good"
    good_dir.mkdir()
    label_file = "t10k-labels-idx1-ubyte.gz"
    shutil.copy(SHARED_MNIST / label_file, good_dir / label_file)
    good = serve(good_dir)
    target = tmp_path / "cache" / "mnist"
    # Pre-seed the other three so only the label file is fetched (they are not re-downloaded).
    write_small_dataset(target)
    (target / label_file).unlink()
    assert data.download_dataset("mnist", tmp_path / "cache", mirrors=[empty, good]) == target
    assert data.read_idx(target / label_file).shape == (10000,)
    assert not [p for p in target.iterdir() if p.name.startswith(".part-")]


@needs_mnist
def test_download_with_bad_checksum_leaves_nothing_behind(serve, offline, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in FILE_NAMES:
        shutil.copy(SHARED_MNIST / name, mirror / name)
    corrupted = "train-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress((mirror / corrupted).read_bytes()))
    for i in (100, 5000, 40000):  # still valid labels, so only the checksum can tell
        payload[i] = (payload[i] + 1) % 10
    (mirror / corrupted).write_bytes(gzip.compress(bytes(payload)))
    monkeypatch.setenv("FASTMLP_MIRROR", serve(mirror))

    with pytest.raises(DataError, match="checksum mismatch") as info:
        data.load_dataset("mnist")
    assert corrupted in str(info.value)
    cached = offline / "mnist"
    assert not (cached / corrupted).exists()
    assert leftovers(cached) == []


def test_download_404_is_a_data_error(serve, offline, monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("FASTMLP_MIRROR", serve(tmp_path / "empty"))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: download failed: .*HTTP 404"):
        data.load_dataset("fashion_mnist")
    assert not (offline / "fashion_mnist").exists()


def test_download_of_a_non_gzip_page_is_a_data_error(serve, offline, monkeypatch, tmp_path):
    page = tmp_path / "page"
    page.mkdir()
    for name in FILE_NAMES:
        (page / name).write_text("<html>not here</html>")
    monkeypatch.setenv("FASTMLP_MIRROR", serve(page))
    with pytest.raises(DataError, match="corrupt gzip"):
        data.load_dataset("mnist")
    assert not (offline / "mnist").exists()


# --------------------------------------------------------------------------- split / scale

def test_train_val_split():
    train, val = data.train_val_split(60000, 0.1, seed=1)
    assert train.dtype == np.int64 and val.dtype == np.int64
    assert len(val) == 6000 and len(train) == 54000
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(60000))
    again_train, again_val = data.train_val_split(60000, 0.1, seed=1)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    _, other_val = data.train_val_split(60000, 0.1, seed=2)
    assert not np.array_equal(val, other_val)


def test_train_val_split_rounds_and_allows_no_validation():
    assert len(data.train_val_split(105, 0.1, seed=0)[1]) == round(10.5)
    train, val = data.train_val_split(10, 0.0, seed=0)
    assert len(val) == 0 and len(train) == 10


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "float32"])
def test_scale_pixels(dtype):
    x = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    scaled = data.scale_pixels(x, dtype)
    assert scaled.dtype == np.dtype(dtype) and scaled.flags.c_contiguous
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    np.testing.assert_allclose(scaled, x / 255.0, rtol=1e-7)
    # A non-contiguous view still gives a contiguous result.
    assert data.scale_pixels(np.zeros((4, 6), np.uint8)[:, ::2], dtype).flags.c_contiguous
