"""The installed package: its version follows the workspace's, it is typed, its stubs are
generated from the current proto."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import mobilesam_client as mc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def test_version_follows_the_workspace():
    cargo = (ROOT / "Cargo.toml").read_text()
    section = cargo[cargo.index("[workspace.package]"):]
    version = re.search(r'^version\s*=\s*"([^"]+)"', section, re.M).group(1)
    assert mc.__version__ == version


def test_installed_not_the_source_tree():
    # run_tests.sh installs the package into a fresh venv: the tests use that copy.
    package = Path(mc.__file__).resolve().parent
    assert "site-packages" in package.parts, package
    assert (package / "py.typed").is_file()
    assert (package / "_proto" / "mobilesam_pb2.pyi").is_file()


def test_stubs_are_current_with_the_proto(capsys):
    spec = importlib.util.spec_from_file_location("regenerate_stubs", HERE.parent / "regenerate_stubs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = sys.argv
    sys.argv = ["regenerate_stubs.py", "--check"]
    try:
        status = module.main()
    finally:
        sys.argv = argv
    assert status == 0, "the committed stubs are stale: run python clients/python/regenerate_stubs.py\n" + \
        capsys.readouterr().out


def test_wire_descriptor_is_the_contracts():
    assert mc.pb.DESCRIPTOR.name == "mobilesam/v1/mobilesam.proto"
    assert mc.pb.DESCRIPTOR.package == "mobilesam.v1"
    assert "SetImage" in mc.pb.DESCRIPTOR.services_by_name["SegmentAnything"].methods_by_name
