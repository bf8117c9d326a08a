"""Evaluation before any training holds out exactly the files the first training run holds out."""

from __future__ import annotations

import pytest

from codetailor.home import Home
from codetailor.tenants import Registry
from evaluation import data as eval_data
from tests.evaluation.helpers import fake_model_dir, settings_with, tenant
from training.run import split_tenant_files

CODE = "def f{i}(x):\n    y = x + {i}\n    return y * 2\n"


def _repo(root, names):
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(CODE.format(i=len(name)))
    return root


@pytest.mark.parametrize("layout", [
    {"main": [f"pkg/m{i}.py" for i in range(30)]},
    # two sources, one path in both (the first source in name order keeps it)
    {"api": [f"api/h{i}.py" for i in range(15)] + ["common/util.py"],
     "web": [f"web/v{i}.py" for i in range(15)] + ["common/util.py"]},
])
def test_seeded_evaluation_split_is_the_first_training_split(tmp_path, layout):
    settings = settings_with(tmp_path / "home", fake_model_dir(tmp_path))
    paths = tenant(settings)
    registry = Registry(Home(settings.home), pepper="test")
    for name, files in layout.items():
        registry.add_source(paths.tenant, name, str(_repo(tmp_path / name, files)))
    before = eval_data.load(settings, paths, None, None)
    first = split_tenant_files(settings, paths)
    assert before.split["source"] == "seeded"
    assert before.heldout == sorted(first.split.heldout)
    assert sorted(before.files) == sorted(f.path for f in first.train + first.heldout)
