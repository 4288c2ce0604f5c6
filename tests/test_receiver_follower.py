"""The receiver's follower keeps count of how long its oldest due delivery has waited: the
store process steps up the applying from half a second of wait on (store_process.BEHIND_S),
so a wait that forgot the oldest would let deliveries go unapplied for as long as the load
lasts."""

from __future__ import annotations

import time

from workbench.receiver.follower import Follower
from workbench.services.context import ServiceContext
from workbench.services.payload_crypto import NO_VAULTS


def test_a_step_that_leaves_some_of_a_group_keeps_their_wait(ctx: ServiceContext) -> None:
    follower = Follower(ctx, NO_VAULTS)  # no connection of these IDs: a step applies nothing
    follower.add({"con_first": ["dlv_1", "dlv_2", "dlv_3"]})
    time.sleep(0.2)
    follower.add({"con_first": ["dlv_4"], "con_second": ["dlv_5"]})
    follower.step_size = 2

    follower.step()  # dlv_1 and dlv_2: dlv_3 has waited since the first group came
    assert follower.backlog() == 3 and follower.waited() >= 0.2

    follower.step()  # connections take turns: con_second's dlv_5, then con_first's dlv_3 and dlv_4
    assert follower.backlog() == 2 and follower.waited() >= 0.2
    follower.step()
    assert follower.backlog() == 0 and follower.waited() == 0.0 and not follower.ready()
