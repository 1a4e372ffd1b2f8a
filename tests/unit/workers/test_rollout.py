"""The rollout's one generation rule, applied wherever a worker decides: following a
target, installing what it built, preparing a strict task."""

from __future__ import annotations

import pytest

from recsys.archive import file_sha256
from recsys.errors import NoEngine
from recsys_workers.rollout import Followed, Target, is_newer


@pytest.mark.parametrize(("generation", "than", "newer"), [(2, 1, True), (1, 1, False), (1, 2, False), (1, 0, True)])
def test_the_generation_rule(generation, than, newer):
    assert is_newer(generation, than) is newer


def test_an_archive_built_here_is_installed_only_when_its_generation_is_newer(app, archives):
    rollout = app.services.rollout
    first, second, third = archives(), archives(), archives()
    installed = rollout.install_built(first, generation=2, sha256=file_sha256(first))

    assert rollout.install_built(second, generation=2, sha256=file_sha256(second)) == installed
    assert rollout.install_built(second, generation=1, sha256=file_sha256(second)) == installed
    assert app.services.store.versions() == [installed.version]

    newer = rollout.install_built(third, generation=3, sha256=file_sha256(third))
    assert newer.generation == 3 and newer.version != installed.version
    assert app.services.store.current() == newer


def test_an_older_target_of_a_version_on_disk_is_not_switched_to(app, fake_api, archives):
    rollout = app.services.rollout
    first = fake_api.publish(archives())
    rollout.follow(Target(first.generation, first.version, manifest_sha256=first.manifest_sha256))
    second = fake_api.publish(archives())
    rollout.follow(Target(second.generation, second.version, manifest_sha256=second.manifest_sha256))
    assert app.services.store.has(first.version)

    followed, current = rollout.follow(Target(first.generation, first.version, manifest_sha256=first.manifest_sha256))

    assert followed is Followed.IGNORED and current.version == second.version
    assert fake_api.pulls == 2


def test_a_strict_task_is_not_served_by_an_older_generation(app, fake_api, archives):
    fake_api.publish(archives())
    assert app.services.rollout.prepare(strict=False, at_least=None).generation == 1
    with pytest.raises(NoEngine, match="generation 2 or newer, but the API serves generation 1"):
        app.services.rollout.prepare(strict=True, at_least=2)
    assert app.services.rollout.prepare(strict=False, at_least=2).generation == 1
    assert app.services.catch_up_requested.is_set()
