from __future__ import annotations

import pytest

from tests.retrieval.gitrepo import GitRepo

PY_MAIN = '''import os


def parse_config(path):
    """Read the service configuration."""
    with open(path) as f:
        return f.read()


class InvoiceLedger:
    def add_invoice(self, invoice):
        self.items.append(invoice)

    def total_amount(self):
        return sum(i.amount for i in self.items)
'''

JAVA = '''package com.acme;

public class PaymentGateway {
    public boolean chargeCard(String card, int cents) {
        return cents > 0;
    }

    @Deprecated
    public void legacyRefund(String card) {
        System.out.println(card);
    }
}
'''

GO = '''package shipping

// ComputeFreight returns the freight cost for a parcel.
func ComputeFreight(weightKg float64) float64 {
	return weightKg * 4.5
}
'''


@pytest.fixture(autouse=True)
def _close_shards():
    """Release the embedded vector shards a test opened (a shard serves one process at a time)."""
    yield
    from retrieval.vectors import close_edge_shards

    close_edge_shards()


@pytest.fixture
def settings(tmp_home):
    from codetailor.config import load_settings

    return load_settings(home=tmp_home, retrieval={"exact_vectors": True})


@pytest.fixture
def registry(settings):
    from codetailor.tenants import registry_from_settings

    return registry_from_settings(settings)


@pytest.fixture
def sample_repo(tmp_path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"app/main.py": PY_MAIN, "src/PaymentGateway.java": JAVA}, "initial import", days_ago=400)
    repo.commit({"ship/freight.go": GO}, "add freight", days_ago=3)
    return repo
