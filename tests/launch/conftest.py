"""One render of every case per session, shared by the golden and the syntax tests."""

import pytest

from cod_megatron.launch.submit import render_sbatch
from tests.launch.cases import CASES


@pytest.fixture(scope="session")
def rendered() -> dict[str, str]:
    return {name: render_sbatch(recipe, overrides, s) for name, (recipe, overrides, _, s) in CASES.items()}
