"""A Grid that keeps at most ``window`` messages in flight, pushing more as replies arrive.

Replies are handed on as they arrive, so a strategy can aggregate them one by one
(``FedRecStrategy`` does) and a round never holds every message and reply at once: this bounds the
server's memory for large federations, in simulation and deployment. In Flower 1.42's stock
simulation the window also bounded the engine's scan of stored messages (every stored message for
every node on each 0.1 s poll); ``server_app.linkstate_index`` now makes that scan per node.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid


class WindowedGrid(Grid):
    """Wrap ``grid``; ``send_and_receive`` streams messages through a bounded window."""

    def __init__(self, grid: Grid, window: int, poll: float = 0.01) -> None:
        self._grid = grid
        self.window = window
        self.poll = poll

    def set_run(self, run):  # noqa: ANN001, ANN201 - Flower's own signature
        self._grid.set_run(run)

    @property
    def run(self):  # noqa: ANN201
        return self._grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> Iterable[Message]:
        """Replies as they arrive (a generator): the caller can aggregate and drop each one, so
        a round never holds every reply at once. Messages are pushed when iteration starts."""
        if self.window <= 0:
            return self._grid.send_and_receive(list(messages), timeout=timeout)
        return self._stream(deque(messages), timeout)

    def _stream(self, queue: deque[Message], timeout: float | None) -> Iterator[Message]:
        end = None if timeout is None else time.monotonic() + timeout
        in_flight: set[str] = set()
        while queue or in_flight:
            if end is not None and time.monotonic() > end:
                return
            room = self.window - len(in_flight)
            if queue and room > 0:
                batch = [queue.popleft() for _ in range(min(room, len(queue)))]
                in_flight.update(self._grid.push_messages(batch))
            arrived = list(self._grid.pull_messages(in_flight)) if in_flight else []
            in_flight.difference_update(m.metadata.reply_to_message_id for m in arrived)
            if not arrived:
                time.sleep(self.poll)
            yield from arrived
