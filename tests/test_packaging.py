"""Tests of the packaging: the wheel's package list, the lazy public API, and TensorFlow-free imports."""
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _packages_on_disk():
    """Every folder holding an ``__init__.py`` under tflbayes/ and converters/, as the dotted name
    it installs under (converters/... is installed as tflbayes.converters...)."""
    found = set()
    for top, prefix in (("tflbayes", "tflbayes"), ("converters", "tflbayes.converters")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            found.add(".".join([prefix, *rel.parts]))
    return found


def test_every_package_folder_is_listed_in_pyproject(pyproject):
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    missing = sorted(_packages_on_disk() - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_folder_of_python_files_is_a_regular_package():
    """A folder of modules without ``__init__.py`` is an implicit namespace package: it imports from a
    checkout, but setuptools warns about it and tools that look for packages skip it."""
    missing = []
    for top in ("tflbayes", "converters"):
        for folder in sorted({p.parent for p in (ROOT / top).rglob("*.py")}):
            rel = folder.relative_to(ROOT)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            if not (folder / "__init__.py").is_file():
                missing.append(str(rel))
    assert not missing, f"folders of Python modules without __init__.py: {missing}"


def test_every_listed_package_exists(pyproject):
    setuptools = pyproject["tool"]["setuptools"]
    package_dir = setuptools.get("package-dir", {})
    for pkg in setuptools["packages"]:
        # resolve through the longest package-dir prefix, as setuptools does
        prefix = max((p for p in package_dir if pkg == p or pkg.startswith(p + ".")), key=len, default=None)
        if prefix is None:
            folder = ROOT.joinpath(*pkg.split("."))
        else:
            rest = pkg[len(prefix):].lstrip(".")
            folder = ROOT.joinpath(package_dir[prefix], *(rest.split(".") if rest else []))
        assert (folder / "__init__.py").is_file(), f"{pkg} -> {folder} has no __init__.py"


def test_converters_are_mapped_under_tflbayes(pyproject):
    setuptools = pyproject["tool"]["setuptools"]
    assert setuptools["package-dir"]["tflbayes.converters"] == "converters"
    assert not any(p == "converters" or p.startswith("converters.") for p in setuptools["packages"])


def test_console_script_entry_point(pyproject):
    assert pyproject["project"]["scripts"]["tflbayes"] == "tflbayes.cli.main:main"
    from tflbayes.cli import main

    assert callable(main.main)


def test_version_matches_pyproject(pyproject):
    import tflbayes

    assert tflbayes.__version__ == pyproject["project"]["version"]


def _imports_tensorflow(code):
    proc = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys\nprint('TF' if 'tensorflow' in sys.modules else 'NO_TF')"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1] == "TF"


@pytest.mark.parametrize(
    "code",
    [
        "import tflbayes",
        "import tflbayes.uncertainty",
        "import tflbayes as tb; tb.Prediction; tb.InvalidInputError; tb.uncertainty.decompose",
        "import numpy as np; from tflbayes.uncertainty import decompose, dirichlet_decompose\n"
        "decompose(np.full((2, 3, 4), 0.25)); dirichlet_decompose(np.ones((3, 4)))",
        "import tflbayes.errors, tflbayes._io, tflbayes._checks",
    ],
    ids=["tflbayes", "uncertainty", "lazy-attrs", "uncertainty-calls", "numpy-helpers"],
)
def test_light_imports_do_not_import_tensorflow(code):
    assert not _imports_tensorflow(code)


def test_the_check_sees_tensorflow_when_it_is_imported():
    # the check above can fail (a stand-in module keeps this cheap: no real TensorFlow start-up)
    assert _imports_tensorflow("import sys, types; sys.modules['tensorflow'] = types.ModuleType('tensorflow')")


def test_lazy_public_api_resolves():
    import tflbayes as tb

    for name in tb.__all__:
        module_name = tb._LAZY.get(name, (None,))[0]
        if module_name is not None and importlib.util.find_spec(module_name) is None:
            pytest.skip(f"tflbayes.{name}: module {module_name} is not written yet")
    for name in tb.__all__:
        module_name = tb._LAZY.get(name, (None,))[0]
        if module_name is not None and importlib.util.find_spec(module_name) is None:
            continue
        assert getattr(tb, name) is not None, name
    assert set(tb.__all__) <= set(dir(tb))
    with pytest.raises(AttributeError, match="no_such_thing"):
        tb.no_such_thing  # noqa: B018
    assert tb.fit is tb.methods.fit
    assert tb.load is tb.posterior.load and tb.merge is tb.posterior.merge


def test_lazy_public_api_names_existing_modules():
    import tflbayes as tb

    missing = sorted(m for m, _ in tb._LAZY.values() if importlib.util.find_spec(m) is None)
    assert not missing, f"public names point at modules that do not exist: {missing}"
    for name, (module, attr) in tb._LAZY.items():
        value = getattr(tb, name)
        assert value is not None, name
        if attr is None:
            continue
        target = getattr(importlib.import_module(module), attr)
        if module.rsplit(".", 1)[-1] == name:
            # importing the submodule tflbayes.distill rebinds tb.distill to the package, which is
            # callable and forwards to the function (tested in test_distill)
            assert callable(value) and callable(target), name
        else:
            assert target is value, name
