"""Tests of the packaging: package discovery and the converters link, the wheel's contents, the lazy
public API, and TensorFlow-free imports."""
import importlib.util
import os
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
    """Every folder holding an ``__init__.py`` under tflbayes/ (through the converters link) as a dotted name."""
    found = set()
    for folder, _, files in os.walk(ROOT / "tflbayes", followlinks=True):  # as setuptools' discovery walks
        rel = Path(folder).relative_to(ROOT)
        if "__init__.py" in files and not any(p.startswith(".") or p == "__pycache__" for p in rel.parts):
            found.add(".".join(rel.parts))
    return found


def test_packages_are_discovered_not_listed(pyproject):
    setuptools = pyproject["tool"]["setuptools"]
    assert "package-dir" not in setuptools and set(setuptools["packages"]) == {"find"}
    assert setuptools["packages"]["find"]["include"] == ["tflbayes", "tflbayes.*"]


def test_every_folder_of_python_files_is_a_regular_package():
    """A folder of modules without ``__init__.py`` is an implicit namespace package: it imports from a
    checkout, but package discovery skips it, so the wheel would lack it."""
    missing = []
    for top in ("tflbayes", "converters"):
        for folder in sorted({p.parent for p in (ROOT / top).rglob("*.py")}):
            rel = folder.relative_to(ROOT)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            if not (folder / "__init__.py").is_file():
                missing.append(str(rel))
    assert not missing, f"folders of Python modules without __init__.py: {missing}"


def test_converters_folder_is_linked_as_tflbayes_converters():
    link = ROOT / "tflbayes" / "converters"
    assert link.is_symlink() and link.readlink() == Path("..") / "converters"
    assert link.resolve() == (ROOT / "converters").resolve()
    assert {"tflbayes.converters", "tflbayes.converters.graphs"} <= _packages_on_disk()


def test_converters_import_from_a_plain_checkout():
    """``PYTHONPATH=.`` alone (no install: ``-S`` skips site-packages' .pth files, so no editable finder
    runs) resolves ``tflbayes.converters`` to the files of the top-level ``converters/`` folder."""
    import sysconfig

    code = ("import sys, tflbayes.converters.graphs as g, tflbayes.converters.convert as c; "
            "print(g.__file__); print(c.__file__); print('__editable__' in ' '.join(map(str, sys.meta_path)))")
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{sysconfig.get_paths()['purelib']}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=ROOT / "tests", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    graphs, convert, editable = proc.stdout.strip().splitlines()[-3:]
    assert Path(graphs) == ROOT / "tflbayes" / "converters" / "graphs" / "__init__.py"
    assert Path(convert).resolve() == (ROOT / "converters" / "convert.py").resolve()
    assert editable == "False"


def test_wheel_holds_every_package_and_the_converters_files(tmp_path):
    """The built wheel has every package folder (discovered, none forgotten) and the converters' files
    under tflbayes/converters/ — copied through the link, not as a link — and no top-level converters/."""
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                           "--quiet", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("tflbayes-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    in_wheel = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert _packages_on_disk() <= in_wheel, sorted(_packages_on_disk() - in_wheel)
    for f in sorted((ROOT / "converters").rglob("*.py")):
        if "__pycache__" not in f.parts:
            assert "tflbayes/converters/" + f.relative_to(ROOT / "converters").as_posix() in names, f
    assert not any(n.startswith("converters/") for n in names)
    for f in sorted(p for p in (ROOT / "converters").rglob("*") if p.suffix in (".c", ".cc", ".h", ".ld")):
        assert "tflbayes/converters/" + f.relative_to(ROOT / "converters").as_posix() in names, f  # package data


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
