# The workspace version of Cargo.toml ([workspace.package] version); tests/test_packaging.py
# checks that they agree.
__version__ = "0.1.0"
