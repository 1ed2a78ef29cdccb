"""What xapi says when a network plan meets a pool that changed since it was made:
its refusal reaches the user as a sentence, the code kept for scripts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import xenapi_session
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi.errors import XapiError
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.catalogue import Context
from xsctl.xapi.ops.network import resolve_network


def test_a_tag_taken_meanwhile_is_said_plainly(sim: Simulator) -> None:
    with connect(sim) as client:
        cache = client.cache
        op = catalogue.get("vlan.create")
        net = op.kind.load(cache, resolve_network(cache, "xenbr1"))
        plan = catalogue.prepare(op, Context(cache, datetime.now(UTC)), net,
                                 {"tag": 77, "name": "late", "description": None})
        x = xenapi_session(sim)
        try:  # someone else puts VLAN 77 on eth1 of every host first
            other = x.xenapi.network.create({"name_label": "first", "name_description": "",
                                             "MTU": "1500", "other_config": {}})
            eth1 = x.xenapi.network.get_PIFs(net.ref)[0]
            x.xenapi.pool.create_VLAN_from_PIF(eth1, other, "77")
        finally:
            x.xenapi.session.logout()
        with pytest.raises(Exception) as caught:
            client.run(plan)
        err = caught.value
        cause = getattr(err, "cause", err)
        assert isinstance(cause, XapiError) and cause.code == "PIF_VLAN_EXISTS"
        assert cause.friendly == "eth1 already has a VLAN with that tag, or is tagged itself"
        # the new network the plan made first was removed again
        assert "the new network late" in str(err)
        assert not [r for r in sim.store.all("network").values() if r["name_label"] == "late"]
