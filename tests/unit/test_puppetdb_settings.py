"""The ``puppetdb`` plugin section is declared (``orch_settings``): read typed and checked
like orch's own settings, with the bad key named, instead of from a raw dict."""

from __future__ import annotations

from typing import Any

import pytest

from orch.core.config import load_settings
from orch.core.errors import ConfigError
from orch.core.plugins import default_registry
from orch.discovery.puppetdb import SECTION, PuppetDBSettings


def test_the_section_is_declared_to_orch() -> None:
    assert default_registry().settings_sections()[SECTION] is PuppetDBSettings


@pytest.mark.parametrize("section, message", [
    ({"ulr": "https://p:8081"}, "unknown setting 'plugins.puppetdb.ulr' .did you mean 'url'"),
    ({"url": "puppetdb:8081"}, "plugins.puppetdb.url.*http:// or https://"),
    ({"url": 8081}, "plugins.puppetdb.url"),
    ({"cert": ["a"]}, "plugins.puppetdb.cert"),
])
def test_a_bad_puppetdb_setting_names_its_key(section: dict[str, Any], message: str) -> None:
    settings = load_settings(overrides={"plugins": {"puppetdb": section}}, environ={})
    with pytest.raises(ConfigError, match=message):
        default_registry().check_settings(settings)
        PuppetDBSettings.from_settings(settings)


def test_the_section_reads_typed_values_and_the_environment() -> None:
    settings = load_settings(overrides={"plugins": {"puppetdb": {"ca": "/etc/ca.pem"}}},
                             environ={"ORCH_PUPPETDB_URL": "https://puppetdb:8081"})
    section = PuppetDBSettings.from_settings(settings)
    assert (section.url, section.ca, section.cert, section.key) == (
        "https://puppetdb:8081", "/etc/ca.pem", None, None)
    assert PuppetDBSettings.from_settings(load_settings(overrides={}, environ={})).url is None
