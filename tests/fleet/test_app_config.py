"""Runtime server settings: the kill switch defaults to the setting, is stored in the index,
and follows the change log (a write by another node, a restart)."""

from __future__ import annotations

import pytest

from fleetwatch.config import Settings
from fleetwatch.fleet.app_config import APP_CONFIG_KIND, APP_CONFIG_LINK, AppConfigService
from fleetwatch.fleet.errors import Forbidden, Invalid
from fleetwatch.index import Action, DocumentIndex, Write
from fleetwatch.storage import Database


async def test_setting_is_the_default_until_a_document_exists(index: DocumentIndex) -> None:
    on = AppConfigService(index, Settings(live_queries_disabled=True))
    await on.load()
    assert on.live_query_disabled
    with pytest.raises(Forbidden, match="disabled by the administrator"):
        on.require_live_queries()
    off = AppConfigService(index, Settings())
    await off.load()
    assert not off.live_query_disabled
    off.require_live_queries()


async def test_patch_stores_a_document_and_reports_changes(index: DocumentIndex) -> None:
    service = AppConfigService(index, Settings(live_queries_disabled=True))
    await service.load()
    changed = await service.patch({"server_settings": {"live_query_disabled": False}})
    assert changed == {"live_query_disabled": [True, False]}
    assert not service.live_query_disabled  # the stored value wins over the setting
    doc = await index.get(APP_CONFIG_LINK)
    assert doc is not None and doc.kind == APP_CONFIG_KIND
    assert doc.body["server_settings"] == {"live_query_disabled": False}
    assert await service.patch({"server_settings": {"live_query_disabled": False}}) == {}
    assert await service.patch({}) == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({"agent_options": {}}, "unknown field 'agent_options'"),
        ({"server_settings": 1}, "server_settings: expected an object"),
        ({"server_settings": {"nope": True}}, "server_settings.nope: unknown setting"),
        ({"server_settings": {"live_query_disabled": "yes"}}, "expected true or false"),
        ({"server_settings": {"live_query_disabled": None}}, "expected true or false"),
    ],
)
async def test_bad_bodies_are_refused(index: DocumentIndex, body: object, message: str) -> None:
    service = AppConfigService(index, Settings())
    await service.load()
    with pytest.raises(Invalid, match=message):
        await service.patch(body)
    assert await index.get(APP_CONFIG_LINK) is None


async def test_value_follows_the_change_log_not_only_its_own_patch(
    index: DocumentIndex,
) -> None:
    service = AppConfigService(index, Settings())
    await service.load()
    # a write that did not go through this service (as another node's arrives)
    await index.write(
        Write(
            Action.PUT,
            APP_CONFIG_LINK,
            APP_CONFIG_KIND,
            {"server_settings": {"live_query_disabled": True}},
        )
    )
    assert service.live_query_disabled
    await index.write(Write(Action.DELETE, APP_CONFIG_LINK))
    assert not service.live_query_disabled  # no document: the setting again


async def test_another_nodes_write_arrives_through_the_change_log(db: Database) -> None:
    node_a, node_b = DocumentIndex(db), DocumentIndex(db)
    await node_a.start()
    await node_b.start()
    config_a = AppConfigService(node_a, Settings())
    config_b = AppConfigService(node_b, Settings())
    await config_a.load()
    await config_b.load()
    await config_b.patch({"server_settings": {"live_query_disabled": True}})
    assert config_b.live_query_disabled and not config_a.live_query_disabled
    await node_a.catch_up()  # what a cluster node does with a change another node published
    assert config_a.live_query_disabled
    # and a node started afterwards (a restart) reads the stored value
    restarted = AppConfigService(DocumentIndex(db), Settings())
    await restarted.load()
    assert restarted.live_query_disabled
