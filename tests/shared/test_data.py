"""Data registry: real loaders on the real offline copies, sha256 checks, and one clear error when data are missing."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from shared.data import DataCorruptError, DataMissingError, kit_data_dir, list_datasets, load
from shared.data.images import read_idx
from shared.data.text import split_documents
from shared.data.torch_adapter import array_loader, images_to_float


def test_read_idx_hand_made(tmp_path: Path) -> None:
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    (tmp_path / "x.gz").write_bytes(gzip.compress(header + bytes(range(12))))
    assert read_idx(tmp_path / "x.gz").tolist() == np.arange(12).reshape(2, 2, 3).tolist()
    (tmp_path / "short").write_bytes(header + bytes(range(5)))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_image_sets(name: str) -> None:
    test = load(name, split="test")
    assert test["images"].shape == (10000, 28, 28) and test["images"].dtype == np.uint8
    assert test["labels"].dtype == np.int64 and set(np.unique(test["labels"])) == set(range(10))


def test_missing_data_names_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_PAPERS_DATA", str(tmp_path))
    monkeypatch.delenv("MNIST_DIR", raising=False)
    with pytest.raises(DataMissingError) as err:
        load("mnist", split="train")
    message = str(err.value)
    assert str(tmp_path / "mnist/package/data") in message and "train-images-idx3-ubyte" in message
    assert "make setup" in message and "MNIST_DIR" in message


def test_an_env_var_naming_a_wrong_folder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))  # empty, while the cache holds MNIST
    with pytest.raises(DataMissingError, match=r"\$MNIST_DIR=.* does not hold data set 'mnist'.*unset it"):
        load("mnist", split="train")


def test_corrupted_file_is_refused(tmp_path: Path) -> None:
    src = Path(load.__globals__["data_home"]()) / "mnist/package/data"
    for f in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(src / f, tmp_path / f)
    data = bytearray((tmp_path / "t10k-labels-idx1-ubyte").read_bytes())
    data[100] ^= 1
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(data))
    with pytest.raises(DataCorruptError, match="t10k-labels-idx1-ubyte: sha256"):
        load("mnist", split="test", root=tmp_path)


def test_unknown_dataset_and_split() -> None:
    with pytest.raises(KeyError, match="registered: .*fashion_mnist"):
        load("imagenet")
    with pytest.raises(ValueError, match="split must be one of"):
        load("mnist", split="valid")


def test_document_split_is_deterministic_disjoint_and_complete() -> None:
    titles = [f"doc{i}" for i in range(6)]
    split = split_documents(titles)
    assert split == split_documents(list(reversed(titles)))
    assert [len(split[k]) for k in ("train", "validation", "test")] == [4, 1, 1]
    assert sorted(sum(split.values(), [])) == titles


@pytest.mark.parametrize(("name", "n_docs"), [("shakespeare", 42), ("austen", 6), ("python_docs", 497)])
def test_text_corpora(name: str, n_docs: int) -> None:
    splits = {s: load(name, split=s) for s in ("train", "validation", "test")}
    titles = [set(d["title"]) for d in splits.values()]
    assert sum(len(t) for t in titles) == n_docs and not (titles[0] & titles[1] or titles[0] & titles[2])
    assert all(len(text) > 100 for d in splits.values() for text in d["text"][:3])


def test_toy2d_log_prob_matches_scipy() -> None:
    data = load("toy2d", name="ring8", n=500, seed=0)
    mix = data["mixture"]
    x = data["points"][:20].astype(np.float64)
    expected = np.log(sum(w * multivariate_normal(m, mix.std**2 * np.eye(2)).pdf(x) for m, w in zip(mix.means, mix.weights)))
    assert np.allclose(mix.log_prob(x), expected)
    assert np.array_equal(load("toy2d", name="ring8", n=500, seed=0)["points"], data["points"])


def test_fewshot_tox21_official_split() -> None:
    bench = load("tox21")
    assert bench.train_tasks == list(range(1, 10)) and bench.test_tasks == [10, 11, 12]
    task = bench.tasks[1]
    assert len(task.smiles) == len(task.labels) and 0 < task.n_pos < len(task.labels)


def test_mimic3_demo_counts_match_pandas() -> None:
    tables = load("mimic3")
    raw = pd.read_csv(kit_data_dir() / "mimic3demo" / "ADMISSIONS.csv.gz")
    assert len(tables["ADMISSIONS"]) == len(raw) == 129
    assert tables["PATIENTS"]["SUBJECT_ID"].nunique() == 100


def test_mimic3_missing_table(tmp_path: Path) -> None:
    shutil.copy(kit_data_dir() / "mimic3demo" / "PATIENTS.csv.gz", tmp_path)
    with pytest.raises(DataMissingError, match="ADMISSIONS.csv.gz"):
        load("mimic3", root=tmp_path)


def test_every_registered_dataset_has_instructions() -> None:
    for entry in list_datasets():
        assert entry.how_to_get and entry.description


def test_torch_adapter() -> None:
    images = np.array([[[0, 255]]], dtype=np.uint8)
    assert images_to_float(images).tolist() == [[[[-1.0, 1.0]]]]
    batches = [b[0].tolist() for b in array_loader(np.arange(6), batch_size=4, shuffle=True, seed=3)]
    assert batches == [b[0].tolist() for b in array_loader(np.arange(6), batch_size=4, shuffle=True, seed=3)]
    assert sorted(sum(batches, [])) == list(range(6))
    with pytest.raises(ValueError, match="differ in length"):
        array_loader(np.arange(3), np.arange(4), batch_size=2, shuffle=False)


def _fake_cifar_tarball(path: Path) -> None:
    import io
    import pickle
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name in ("test_batch",):
            data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
            blob = pickle.dumps({b"data": data, b"labels": [3, 7]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_cifar10_reader_layout_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.data.images import read_cifar10_tarball

    _fake_cifar_tarball(tmp_path / "cifar-10-python.tar.gz")
    data = read_cifar10_tarball(tmp_path / "cifar-10-python.tar.gz", "test")
    assert data["images"].shape == (2, 32, 32, 3) and data["labels"].tolist() == [3, 7]
    # channel-major rows: pixel (0, 0) of image 0 holds bytes 0 (R), 1024 (G) and 2048 (B) of its row
    assert data["images"][0, 0, 0].tolist() == [0, 1024 % 256, 2048 % 256]
    with pytest.raises(DataCorruptError, match="md5"):
        load("cifar10", split="test", root=tmp_path)
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setenv("ML_PAPERS_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataMissingError, match="CIFAR10_DIR"):
        load("cifar10", split="train")


def _fake_celeba(root: Path, as_zip: bool) -> list[str]:
    """Three 178x218 'aligned faces': grey background, the face box painted a per-image colour."""
    import zipfile

    from PIL import Image

    from shared.data.images import CELEBA_FACE_BOX

    names = ["000001.jpg", "000002.jpg", "000003.jpg"]
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 2\n000003.jpg 0\n")
    images = {}
    for i, name in enumerate(names):
        pixels = np.zeros((218, 178, 3), dtype=np.uint8)
        left, top, right, bottom = CELEBA_FACE_BOX
        pixels[top:bottom, left:right] = (40 * i, 200, 255 - 40 * i)
        images[name] = pixels
    if as_zip:
        with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as zf:
            for name, pixels in images.items():
                with zf.open(f"img_align_celeba/{name}", "w") as fh:
                    Image.fromarray(pixels).save(fh, format="JPEG", quality=100, subsampling=0)
    else:
        (root / "img_align_celeba").mkdir()
        for name, pixels in images.items():
            Image.fromarray(pixels).save(root / "img_align_celeba" / name, quality=100, subsampling=0)
    return names


@pytest.mark.parametrize("as_zip", [False, True])
def test_celeba64_split_crop_and_checks(tmp_path: Path, as_zip: bool) -> None:
    _fake_celeba(tmp_path, as_zip)
    train = load("celeba64", split="train", root=tmp_path, check_md5=False)["images"]
    assert train.shape == (2, 64, 64, 3) and train.dtype == np.uint8
    # the crop keeps exactly the painted face box: every output pixel has that image's colour (JPEG tolerance)
    for image, colour in zip(train, [(0, 200, 255), (80, 200, 175)]):
        assert np.abs(image.astype(int) - colour).max() <= 12
    assert load("celeba64", split="test", root=tmp_path, check_md5=False)["images"].shape == (1, 64, 64, 3)
    assert load("celeba64", split="train", root=tmp_path, limit=1, check_md5=False)["images"].shape == (1, 64, 64, 3)
    with pytest.raises(DataCorruptError, match="md5"):
        load("celeba64", split="train", root=tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load("celeba64", split="validation", root=tmp_path)


def test_celeba64_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_PAPERS_DATA", str(tmp_path))
    monkeypatch.delenv("CELEBA_DIR", raising=False)
    with pytest.raises(DataMissingError, match="CELEBA_DIR"):
        load("celeba64", split="train")
    (tmp_path / "celeba").mkdir()
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    with pytest.raises(DataMissingError, match="neither img_align_celeba"):
        load("celeba64", split="train", check_md5=False)
    (tmp_path / "celeba" / "img_align_celeba").mkdir()
    with pytest.raises(DataMissingError, match="000001.jpg is listed"):
        load("celeba64", split="train", check_md5=False)


def _write_fsmol_task(path: Path, smiles: list[str], labels: list[int]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"SMILES": s, "Property": f"{y:.1f}", "Assay_ID": path.name}) for s, y in zip(smiles, labels)]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def test_fsmol_layout_from_real_tox21_molecules(tmp_path: Path) -> None:
    tox21 = load("tox21")
    task = tox21.tasks[1]
    pos = [s for s, y in zip(task.smiles, task.labels) if y][:3]
    neg = [s for s, y in zip(task.smiles, task.labels) if not y][:5]
    for split, names in (("train", ["CHEMBL2", "CHEMBL1"]), ("valid", ["CHEMBL7"]), ("test", ["CHEMBL9"])):
        for name in names:
            _write_fsmol_task(tmp_path / split / f"{name}.jsonl.gz", pos + neg, [1] * len(pos) + [0] * len(neg))
    bench = load("fsmol", root=tmp_path)
    assert (bench.train_tasks, bench.valid_tasks, bench.test_tasks) == ([1, 2], [3], [4])
    assert [bench.tasks[i].name for i in (1, 2, 3, 4)] == ["CHEMBL1", "CHEMBL2", "CHEMBL7", "CHEMBL9"]
    assert bench.tasks[4].smiles == pos + neg and bench.tasks[4].labels == [1, 1, 1, 0, 0, 0, 0, 0]
    assert bench.tasks[4].n_pos == 3
    assert load("fsmol", root=tmp_path, max_tasks_per_split=1).train_tasks == [1]


def test_fsmol_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_PAPERS_DATA", str(tmp_path))
    monkeypatch.delenv("FSMOL_DIR", raising=False)
    with pytest.raises(DataMissingError, match="FSMOL_DIR"):
        load("fsmol")
    for split in ("train", "valid", "test"):
        (tmp_path / "fsmol" / split).mkdir(parents=True)
    with pytest.raises(DataMissingError, match="holds no"):
        load("fsmol")
