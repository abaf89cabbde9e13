"""Datasets: sources, readers, the build pipeline, immutable versions, synthetic data and export.

    from tuneloop.data import build_dataset, get_version
    version = get_version(project, "support")          # newest version of a recipe
    for record in version.iter_split("train"): ...
"""

from tuneloop.data.versions import DatasetVersion, get_version, list_versions

__all__ = ["DatasetVersion", "get_version", "list_versions"]
