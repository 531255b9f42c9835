"""Graph packages: package.toml, archives, and loading a package's graph."""

from headrace.packages.archive import Limits, PackageError, build_package, extract_package
from headrace.packages.loader import apply_manifest, load_graph
from headrace.packages.manifest import AccumulatorEntry, Manifest, ManifestError, parse_manifest

__all__ = [
    "AccumulatorEntry",
    "Limits",
    "Manifest",
    "ManifestError",
    "PackageError",
    "apply_manifest",
    "build_package",
    "extract_package",
    "load_graph",
    "parse_manifest",
]
