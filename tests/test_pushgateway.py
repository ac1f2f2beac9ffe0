"""Optional Pushgateway push: off by default, and what a run pushes when PUSHGATEWAY_URL is set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakeproviders import Fault
from tests.support import RecordingServer


class Pushgateway(RecordingServer):
    def samples(self, index: int = -1) -> dict[str, float]:
        body = self.requests[index][2].decode()
        return {
            sample.name + "".join(f"{{{k}={v}}}" for k, v in sample.labels.items()): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }


@pytest.fixture
def pushgateway() -> Iterator[Pushgateway]:
    gateway = Pushgateway()
    yield gateway
    gateway.stop()


def test_nothing_is_pushed_without_pushgateway_url(scrape, pushgateway):
    assert scrape("ranks") == 0
    assert pushgateway.requests == []


def test_a_successful_run_pushes_its_metrics_grouped_by_kind(scrape, pushgateway):
    assert scrape("ranks", PUSHGATEWAY_URL=pushgateway.url) == 0
    [(method, path, _)] = pushgateway.requests
    assert (method, path) == ("POST", "/metrics/job/top_coins_scraper/kind/ranking")
    samples = pushgateway.samples()
    assert samples["top_coins_scrape_items{source=coindesk}"] == 200
    assert samples["top_coins_scrape_credits{source=coindesk}"] == 1
    assert samples["top_coins_scrape_outcome{outcome=succeeded}{source=coindesk}"] == 1
    assert samples["top_coins_scrape_outcome{outcome=failed}{source=coindesk}"] == 0
    assert samples["top_coins_scrape_duration_seconds{source=coindesk}"] > 0
    assert samples["top_coins_scrape_last_success_timestamp_seconds{source=coindesk}"] > 1.7e9


def test_a_failed_run_pushes_its_outcome_but_keeps_the_last_success_time(
    scrape, providers, pushgateway
):
    providers.inject("coindesk", Fault.ERROR_PAYLOAD, times=-1)
    assert scrape("ranks", PUSHGATEWAY_URL=pushgateway.url) == 1
    samples = pushgateway.samples()
    assert samples["top_coins_scrape_outcome{outcome=failed}{source=coindesk}"] == 1
    assert not any(name.startswith("top_coins_scrape_last_success") for name in samples)


def test_an_unreachable_pushgateway_does_not_fail_the_run(scrape, capsys):
    assert scrape("ranks", PUSHGATEWAY_URL="http://127.0.0.1:1") == 0
    assert "could not push run metrics" in capsys.readouterr().out


def test_invalid_pushgateway_url_is_a_configuration_error(scrape, capsys):
    assert scrape("ranks", PUSHGATEWAY_URL="not-a-url") == 2
    assert "PUSHGATEWAY_URL" in capsys.readouterr().err
