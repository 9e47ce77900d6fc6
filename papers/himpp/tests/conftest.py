"""Fixtures shared by the HiMPP tests: the tiny smoke config and the (cleaned) SIDER benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from papers.himpp.common import load_benchmark
from papers.himpp.config import HiMPPConfig
from papers.himpp.featurize import GraphCache
from shared.runs import load_config

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


@pytest.fixture(scope="session")
def smoke_cfg() -> HiMPPConfig:
    return load_config(HiMPPConfig, SMOKE)


@pytest.fixture(scope="session")
def cache() -> GraphCache:
    return GraphCache()


@pytest.fixture(scope="session")
def sider(cache: GraphCache):
    return load_benchmark("sider", cache)
