"""Secure aggregation (SecAgg+) in a real in-process federation: Flower's client mod, our server.

The server must end with the same model as plain aggregation (up to quantisation), never hold
one client's update, survive clients that drop out mid-protocol, and refuse to report a round
whose masks could not be removed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from flwr.app import Message
from flwr.common.secure_aggregation.secaggplus_constants import Key, Stage

from server_app import inprocess
from server_app.inprocess import run_inprocess
from strategies import protocol as p
from strategies import secure_aggregation as sa
from strategies.secure_aggregation import CONFIGS, quantization_range, ring_size
from strategies.secure_update import decode, encode
from tests.conftest import inprocess_config

USERS = 24


def config(tmp_path, **extra) -> dict:
    return inprocess_config(tmp_path, USERS, 60, 10, **{"num-server-rounds": 3, "eval-every": 3,
                                                        "strategy": "pfedrec", **extra})


def unmasking(message: Message) -> bool:
    """A SecAgg+ unmask request (Flower's client mod pops the stage key as it reads it)."""
    record = message.content.config_records.get(CONFIGS)
    return record is not None and "active_nids" in record


def train_round(message: Message) -> int | None:
    if p.CONFIG not in message.content.config_records or message.metadata.message_type != "train":
        return None
    return int(message.content[p.CONFIG][p.SERVER_ROUND])


def test_server_recombination_gives_flowers_secrets():
    """The cached-weight recombination returns what Flower's combine_shares returns, for seeds,
    private keys (many chunks) and any subset of at least the threshold, in any order; its field
    multiplication is pycryptodome's; malformed shares are refused."""
    from Crypto.Protocol.SecretSharing import _Element
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares as flower_combine
    from flwr.common.secure_aggregation.crypto.shamir import create_shares

    from strategies.shamir import combine_shares, gf_mul, lagrange_weights

    rng = np.random.default_rng(0)
    for _ in range(500):
        a, b = (int.from_bytes(rng.bytes(16), "big") for _ in range(2))
        assert gf_mul(a, b) == int(_Element(a) * _Element(b))
    for size in (1, 32, 241):
        secret = rng.bytes(size)
        shares = create_shares(secret, 6, 11)
        for subset in (shares[:6], shares[5:], list(reversed(shares))):
            assert combine_shares(subset) == flower_combine(subset) == secret
    mixed = shares[:5] + create_shares(rng.bytes(size), 6, 11)[5:7]
    try:  # shares of two secrets: this one never comes back (or the padding is refused)
        assert combine_shares(mixed) != secret
    except ValueError:
        pass
    for bad in ([shares[0], shares[0]], [shares[0], shares[1][:-1]], []):
        with pytest.raises(ValueError, match="Failed to combine shares"):
            combine_shares(bad)
    # the same indices in another order (replies arrive in any order) reuse the weights
    lagrange_weights.cache_clear()
    for order in (shares, list(reversed(shares)), shares[3:] + shares[:3]):
        assert combine_shares(order) == secret
    assert lagrange_weights.cache_info().misses == 1


def test_simulation_split_is_flowers_sharing_with_fresh_randomness():
    """The in-process engine's client split: shares Flower's own combine_shares rebuilds from any
    threshold of them, in Flower's layout, with coefficients drawn afresh each time; fewer than the
    threshold do not give the secret back."""
    from Crypto.Protocol.SecretSharing import _Element
    from flwr.common.secure_aggregation.crypto.shamir import combine_shares as flower_combine
    from flwr.common.secure_aggregation.crypto.shamir import create_shares as flower_split

    from strategies.shamir import _times_small, create_shares

    rng = np.random.default_rng(1)
    for _ in range(300):
        a, x = int.from_bytes(rng.bytes(16), "big"), int(rng.integers(1, 2**16))
        assert _times_small(a, x) == int(_Element(a) * _Element(x))
    for size, threshold, num in ((1, 1, 3), (32, 6, 11), (241, 11, 21), (48, 21, 21)):
        secret = rng.bytes(size)
        shares = create_shares(secret, threshold, num)
        assert [len(s) for s in shares] == [len(s) for s in flower_split(secret, threshold, num)]
        assert [int.from_bytes(s[:4], "little") for s in shares] == list(range(1, num + 1))
        for _ in range(3):
            picked = [shares[i] for i in rng.choice(num, threshold, replace=False)]
            assert flower_combine(picked) == secret
        if threshold > 1:  # (one share is the secret itself)
            assert create_shares(secret, threshold, num) != shares  # not a seeded draw
            try:
                assert flower_combine(shares[:threshold - 1]) != secret
            except ValueError:  # or the padding is refused
                pass
    with pytest.raises(ValueError, match="threshold"):
        create_shares(b"k", 4, 3)
    grid = inprocess.InProcessGrid(None, 2, {})
    assert inprocess.SECAGGPLUS_CLIENT.create_shares is create_shares and grid.contexts


def test_auto_is_on_in_deployments_and_off_in_simulations():
    from flwr.superlink.grid.http_grid import HttpGrid

    from server_app.app import simulated
    from server_app.inprocess import InProcessGrid
    from strategies.config import RunConfig

    cfg = RunConfig.from_run_config({})
    assert cfg.secure_aggregation == "auto" and not cfg.secure
    assert cfg.resolve_secure_aggregation(simulated=False, users=943).secure
    assert not cfg.resolve_secure_aggregation(simulated=True, users=943).secure
    assert not cfg.resolve_secure_aggregation(simulated=False, users=2).secure  # too few to sum
    forced = RunConfig.from_run_config({"secure-aggregation": True})
    assert forced.resolve_secure_aggregation(simulated=True, users=943).secure
    assert not simulated(HttpGrid("127.0.0.1:1", insecure=True, token="t"))  # a deployment's
    assert simulated(InProcessGrid.__new__(InProcessGrid))
    with pytest.raises(ValueError, match="secure-aggregation must be one of auto, true, false"):
        RunConfig.from_run_config({"secure-aggregation": "sometimes"})


def test_client_app_loads_without_the_model_code():
    """A deployment starts a ClientApp process per message; the SecAgg+ key and unmask exchanges
    must not pay for importing torch and the model code."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-c", "import sys, client_app.app; "
                          "print(sorted({'torch', 'sklearn'} & set(sys.modules)))"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_vector_layout_round_trips():
    shapes = {"E": (5, 2), "w": (2,)}
    change = {"E": np.arange(10.0).reshape(5, 2), "w": np.ones(2)}
    vector = encode(change, {"E": np.array([1, 3])}, shapes, ("E",))
    changes, trained = decode([v * 2 for v in vector], shapes, ("E",))
    assert np.array_equal(changes["E"], change["E"] * 2)
    assert trained["E"].tolist() == [0, 2, 0, 2, 0]
    with pytest.raises(ValueError, match="shapes"):
        decode(vector[:1], shapes, ("E",))


def test_quantisation_never_wraps_and_rings_stay_logarithmic():
    for n in (3, 32, 943, 1024, 6040, 100_000):
        assert n * quantization_range(n) < 1 << 32
        assert quantization_range(n) * 2 * n >= 1 << 32  # the largest that fits
    assert ring_size(5) == 5 and ring_size(943) == 21 and ring_size(100_000) == 35


@pytest.mark.parametrize("strategy", ["pfedrec", "fcf"])
def test_secure_sum_gives_the_plain_model(tmp_path, strategy):
    plain = run_inprocess(config(tmp_path / "plain", strategy=strategy), USERS)[1]
    grid, secure = run_inprocess(config(tmp_path / "secure", strategy=strategy,
                                        **{"secure-aggregation": True}), USERS)
    for name, value in plain.final_shared.items():
        assert np.abs(secure.final_shared[name] - value).max() < 1e-4, name
    assert secure.history.rounds[3].trained == USERS
    # the server never holds an update: replies carry no parameters, only masked integers
    trained = [r for r in grid.replies_seen if p.METRICS in r.content.metric_records and
               p.NUM_EXAMPLES in r.content.metric_records[p.METRICS]]
    assert len(trained) == 3 * USERS
    for reply in trained:
        assert all(len(record) == 0 for record in reply.content.array_records.values())
        masked = reply.content.config_records[CONFIGS]["masked_params"]
        assert len(masked) == 3  # weight, table change, trained-row indicator


def test_update_clip_gives_the_plain_model_under_secure_aggregation(tmp_path):
    """The server cannot clip a masked update, so each client clips its own before masking: the
    model is the one plain aggregation with server-side clipping gives."""
    clip = {"update-clip": 0.05}
    unclipped = run_inprocess(config(tmp_path / "unclipped"), USERS)[1].final_shared
    plain = run_inprocess(config(tmp_path / "plain", **clip), USERS)[1].final_shared
    secure = run_inprocess(config(tmp_path / "secure", **clip, **{"secure-aggregation": True}),
                           USERS)[1].final_shared
    assert max(np.abs(plain[k] - unclipped[k]).max() for k in plain) > 1e-3  # the clip binds
    for name, value in plain.items():
        assert np.abs(secure[name] - value).max() < 1e-4, name


def test_clients_dropping_out_mid_protocol_are_recovered(tmp_path):
    """Round 2: two clients crash after the key exchange, before sending their update (their
    pairwise masks are rebuilt from their neighbours' shares); round 3: one client crashes when
    asked for its shares. The model equals a plain run where the same two updates are lost."""
    crashed: set[int] = set()

    def lose_two(node, received, reply):
        if train_round(received) == 2 and (node in crashed or len(crashed) < 2):
            crashed.add(node)
            raise RuntimeError("device crashed")
        return None

    plain = run_inprocess(config(tmp_path / "plain"), USERS, fault=lose_two)[1]
    assert len(crashed) == 2
    asked: list[int] = []

    def secure_fault(node, received, reply):
        lose_two(node, received, reply)
        if unmasking(received) and len(asked) < 1:
            asked.append(node)
            raise RuntimeError("device crashed while unmasking")
        return None

    secure = run_inprocess(config(tmp_path / "secure", **{"secure-aggregation": True}), USERS,
                           fault=secure_fault)[1]
    assert asked and secure.history.rounds[2].trained == USERS - 2
    assert secure.history.rounds[2].failed == 2
    for name, value in plain.final_shared.items():
        assert np.abs(secure.final_shared[name] - value).max() < 1e-4, name


def test_a_round_whose_masks_cannot_be_removed_leaves_the_model_unchanged(tmp_path, caplog):
    """Round 2: every client but two crashes when asked for its shares: too few shares come back,
    and the round must not report an aggregate (nor a wrong one)."""
    answered: list[int] = []

    def fault(node, received, reply):
        if unmasking(received) and train_round_of[0] == 2:
            answered.append(node)
            if len(answered) > 2:
                raise RuntimeError("gone")
        if train_round(received) is not None:
            train_round_of[0] = train_round(received)
        return None

    train_round_of = [0]
    strategy = run_inprocess(config(tmp_path, **{"secure-aggregation": True,
                                                  "max-failed-rounds": 5}), USERS,
                             fault=fault)[1]
    assert strategy.history.rounds[2].trained == 0
    assert strategy.history.rounds[3].trained == USERS
    assert "secure aggregation failed" in caplog.text


def test_gfmfr_sums_each_group_apart(tmp_path):
    grid, strategy = run_inprocess(config(tmp_path, strategy="gfmfr", backbone="fedrap",
                                          **{"num-groups": 2, "secure-aggregation": True}),
                                   USERS)
    assert strategy.history.rounds[3].trained == USERS
    sizes = [len(c.nodes) for c in strategy._secure.cohorts.values()]
    assert sum(sizes) == USERS and len(sizes) >= 2  # groups known after round 1
    assert strategy.groups.payloads  # the fusion network had group targets
    descriptor = [r.content.config_records[p.DESCRIPTOR] for r in grid.replies_seen
                  if p.DESCRIPTOR in r.content.config_records]
    assert descriptor and set(descriptor[0]) == {"w", "b"}  # the head only, never W1


def test_groups_too_small_to_sum_alone_still_get_a_teacher(tmp_path):
    """4 users in 2 groups: no group has the 3 trainers a secure sum needs, so each is fitted to
    the mean of every trainer; its clients still distil (the README's 3-node deployment)."""
    users = 4
    strategy = run_inprocess(inprocess_config(tmp_path, users, 60, 10, **{
        "num-server-rounds": 3, "eval-every": 3, "strategy": "gfmfr", "num-groups": 2,
        "secure-aggregation": True}), users)[1]
    groups = set(strategy.groups.assignment.values())
    assert len(groups) == 2 and groups <= set(strategy.groups.payloads)
    assert all(-1 in c for c in [strategy._secure.cohorts])  # no group was summed alone
    assert strategy.history.rounds[3].kd_loss is not None and strategy.history.rounds[3].kd_loss > 0


def test_small_groups_are_never_summed_alone():
    from strategies.groups import cohorts_by_group

    group_of = {0: 0, 1: 0, 2: 0, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3, 8: 3, 9: 3}
    cohorts = cohorts_by_group(group_of, 3)
    assert cohorts[0] == [0, 1, 2] and cohorts[3] == [6, 7, 8, 9]
    assert cohorts[-1] == [3, 4, 5]  # groups 1 and 2 together are no group's target
    two_small = cohorts_by_group({n: group_of[n] for n in range(5)}, 3)
    assert two_small == {-1: [0, 1, 2, 3, 4]}  # 3 and 4 alone are too few: joined with group 0


def test_key_exchange_and_unmask_stop_waiting_once_replies_stop():
    """Setup, share keys and unmask end once no reply has come for STAGE_IDLE_TIMEOUT (never
    longer than round-timeout); training keeps round-timeout (FedRecStrategy's own exchange)."""
    assert sa.stage_timeouts(600.0) == (600.0, sa.STAGE_IDLE_TIMEOUT)
    assert sa.stage_timeouts(10.0) == (10.0, 10.0)
    assert sa.stage_timeouts(None, 5.0) == (None, 5.0)
    with pytest.raises(ValueError):
        sa.stage_timeouts(600.0, 0.0)

    class Reply:
        def __init__(self, to):
            self.metadata = type("M", (), {"reply_to_message_id": to})()

    class Grid:  # replies to "a" at t=1 and "b" at t=4; "c" (its node died) never
        def __init__(self, clock):
            self.clock, self.due = clock, {"a": 1.0, "b": 4.0}

        def pull_messages(self, ids):
            ready = [i for i in ids if self.due.get(i, float("inf")) <= self.clock()]
            for i in ready:
                del self.due[i]
            return [Reply(i) for i in ready]

    now = [0.0]
    clock = lambda: now[0]  # noqa: E731

    def sleep(seconds):
        now[0] += seconds

    got = sa.wait_for_replies(Grid(clock), {"a", "b", "c"}, 600.0, 5.0, 1.0, clock, sleep)
    assert sorted(r.metadata.reply_to_message_id for r in got) == ["a", "b"]
    assert now[0] == 9.0  # 5 s after the last reply, not round-timeout
    now[0] = 0.0
    got = sa.wait_for_replies(Grid(clock), {"a", "b", "c"}, 3.0, 5.0, 1.0, clock, sleep)
    assert [r.metadata.reply_to_message_id for r in got] == ["a"] and now[0] == 3.0


def test_a_stage_reply_that_never_comes_costs_the_idle_timeout_not_round_timeout(tmp_path,
                                                                                 monkeypatch):
    """A SuperNode pulls a SecAgg+ message and dies; restarted with the same key before the
    ServerApp polls, it counts as online again and that message is never answered (issue 23). Round
    2 loses a share-keys reply (that node must not train: no masks of its were shared), round 3
    an unmask reply (its neighbours' shares still remove every mask): each stage waits the idle
    timeout, the run goes on and round 3 unmasks the full sum."""
    lost: dict[tuple[str, str], str] = {}

    class LosingGrid(inprocess.InProcessGrid):
        def push_messages(self, messages):
            messages = list(messages)
            stages = []
            for message in messages:
                record = message.content.config_records.get(CONFIGS)
                stages.append((message.metadata.group_id, record.get(Key.STAGE))
                              if record is not None else None)
            ids = super().push_messages(messages)
            for stage, message_id in zip(stages, ids, strict=True):
                if stage in {("2", Stage.SHARE_KEYS), ("3", Stage.UNMASK)} and stage not in lost:
                    lost[stage] = message_id
            return ids

        def pull_messages(self, message_ids):
            return super().pull_messages([i for i in message_ids if i not in lost.values()])

        def send_and_receive(self, messages, *, timeout=None):  # as Flower's: every reply or
            pending, out = set(self.push_messages(messages)), []  # the timeout
            end = time.monotonic() + (timeout or 0.0)
            while pending and time.monotonic() < end:
                arrived = list(self.pull_messages(pending))
                out += arrived
                pending -= {m.metadata.reply_to_message_id for m in arrived}
                time.sleep(0.05 if pending else 0.0)
            return out

    monkeypatch.setattr(inprocess, "InProcessGrid", LosingGrid)
    monkeypatch.setattr(sa, "STAGE_IDLE_TIMEOUT", 0.5)
    strategy = run_inprocess(config(tmp_path, **{"secure-aggregation": True,
                                                  "round-timeout": 120.0}), USERS)[1]
    assert len(lost) == 2
    rounds = strategy.history.rounds
    assert rounds[2].trained == USERS - 1 and rounds[3].trained == USERS
    assert "secure-unmask" in rounds[3].server_seconds
    # the stages that lost a reply waited about the idle timeout, far below round-timeout
    assert rounds[2].server_seconds["secure-setup"] < 60
    assert rounds[3].server_seconds["secure-unmask"] < 60
