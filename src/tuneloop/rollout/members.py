"""What a rollout entry may name: a variant from `tuneloop.yaml`, or a routed variant.

A routed variant (`router.routed`) sends each request to one of its variants by the slice its
router predicts; in a rollout it is one entry, gated by its own evaluation (the routed
evaluation), with the tier of everything it may use.
"""

from __future__ import annotations

from tuneloop.errors import NotFound
from tuneloop.governance.tiers import Actor, Resource
from tuneloop.project import Project


def check_exists(project: Project, name: str) -> None:
    """Raise NotFound, naming what exists, unless `name` is a variant or a routed variant."""
    from tuneloop.router.routed import find_routed, list_routed

    if project.config.variant(name) is not None or find_routed(project, name) is not None:
        return
    names = [v.name for v in project.config.variants] + [r.name for r in list_routed(project)]
    raise NotFound(f"no variant or routed variant named {name!r}; known: "
                   f"{', '.join(names) or 'none'}",
                   hint="variants are declared in tuneloop.yaml; `tuneloop router evaluate` "
                        "defines routed variants")


def variants_of(project: Project, name: str) -> list[str]:
    """The variants behind an entry: itself, or every variant a routed variant may choose."""
    if project.config.variant(name) is not None:
        return [name]
    from tuneloop.router.routed import get_routed

    return get_routed(project, name).members


def resource_of(project: Project, name: str) -> Resource:
    """The entry as a governed resource (a routed one: its router and all its variants)."""
    from tuneloop.variants import get_variant

    if project.config.variant(name) is not None:
        return get_variant(project, name).resource
    from tuneloop.router.routed import get_routed

    return get_routed(project, name).resource(project)


def check_stage(project: Project, actor: Actor, name: str, stage: str) -> None:
    """A variant derived from erased data goes no further than `internal`, routed or not."""
    from tuneloop.flywheel.marks import check_stage as check_marks

    for variant in variants_of(project, name):
        check_marks(project, actor, variant, stage)
