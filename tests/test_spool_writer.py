"""The spool writer's end of its pipes: batches framed one write each, committed together, one
reply per transaction; a frame cut short by a killed receiver is never stored (it was never
answered)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

from workbench.receiver import spool_writer
from workbench.receiver.spool import MOVED, open_spool, unpack, waiting


def _frame(seq: int, rows: list[list[Any]]) -> bytes:
    from workbench.receiver.spool import pack

    batch = pack(rows)
    return spool_writer._FRAME.pack(len(batch), seq, len(rows)) + batch


def test_batches_waiting_together_are_committed_in_one_transaction_with_one_reply(tmp_path: Path) -> None:
    requests_in, requests_out = multiprocessing.Pipe(duplex=False)
    replies_in, replies_out = multiprocessing.Pipe(duplex=False)
    big = [[f"dlv_{n}", "x" * 40_000] for n in range(3)]  # over a pipe's default 64 KiB: read in pieces
    os.write(requests_out.fileno(), _frame(1, [["dlv_a"]]))

    def send_the_rest() -> None:
        for seq, rows in ((2, big), (3, [["dlv_b"], ["dlv_c"]])):
            spool_writer._write_all(requests_out.fileno(), _frame(seq, rows))
    writing = threading.Thread(target=send_the_rest)
    writing.start()
    batches: list[spool_writer._Batch] = []
    ending = False
    incoming = spool_writer._Incoming(requests_in)
    while not ending and sum(b.deliveries for b in batches) < 6:  # all three, however the writes interleave
        more, ending = spool_writer._waiting_batches(incoming)
        batches += more
    writing.join()
    assert [b.seq for b in batches] == [1, 2, 3] and not ending

    conn = open_spool(tmp_path / "r.spool", sync_full=True)
    spool_writer._commit(conn, batches, replies_out)
    assert replies_in.recv_bytes() == spool_writer._REPLY.pack(3)  # one reply: everything through 3
    assert not replies_in.poll(0)
    assert waiting(tmp_path / "r.spool") == (6, 0)
    assert [row[0] for (batch,) in conn.execute("SELECT batch FROM spool ORDER BY seq") for row in unpack(batch)] == \
        ["dlv_a", "dlv_0", "dlv_1", "dlv_2", "dlv_b", "dlv_c"]


def test_a_frame_cut_short_and_the_stop_frame_end_the_reading(tmp_path: Path) -> None:
    requests_in, requests_out = multiprocessing.Pipe(duplex=False)
    whole, cut = _frame(1, [["dlv_a"]]), _frame(2, [["dlv_b"]])
    os.write(requests_out.fileno(), whole + cut[:-3])  # the receiver killed in mid-write
    requests_out.close()
    batches, ending = spool_writer._waiting_batches(spool_writer._Incoming(requests_in))
    assert [b.seq for b in batches] == [1] and ending

    requests_in, requests_out = multiprocessing.Pipe(duplex=False)
    os.write(requests_out.fileno(), whole + spool_writer._STOP)
    batches, ending = spool_writer._waiting_batches(spool_writer._Incoming(requests_in))
    assert [b.seq for b in batches] == [1] and ending


def _seqs(conn: Any) -> list[int]:
    return [seq for (seq,) in conn.execute("SELECT seq FROM spool ORDER BY seq")]


def test_the_writer_deletes_what_the_applier_moved_with_its_next_batch_or_alone(tmp_path: Path) -> None:
    """The applier's marks (the last `seq` it moved) are read without waiting, the newest
    counts, and the delete goes into the writer's next transaction; with no batch waiting, a
    mark alone wakes the writer. A `seq` is never used again once deleted."""
    requests_in, requests_out = multiprocessing.Pipe(duplex=False)
    replies_in, replies_out = multiprocessing.Pipe(duplex=False)
    moved_read, moved_write = os.pipe()
    incoming = spool_writer._Incoming(requests_in, moved_read)
    conn = open_spool(tmp_path / "r.spool", sync_full=True)
    for seq in (1, 2, 3):
        os.write(requests_out.fileno(), _frame(seq, [[f"dlv_{seq}"]]))
        assert incoming.wait()
        batches, _ = spool_writer._waiting_batches(incoming)
        assert spool_writer._commit(conn, batches, replies_out)
    assert _seqs(conn) == [1, 2, 3] and replies_in.recv_bytes() == spool_writer._REPLY.pack(1)

    os.write(moved_write, MOVED.pack(1) + MOVED.pack(2))  # two moves since the last transaction
    os.write(requests_out.fileno(), _frame(4, [["dlv_4"]]))
    assert incoming.wait()
    batches, _ = spool_writer._waiting_batches(incoming)
    incoming.take_marks()
    assert incoming.moved_through == 2
    assert spool_writer._commit(conn, batches, replies_out, delete_through=incoming.moved_through)
    assert _seqs(conn) == [3, 4]

    os.write(moved_write, MOVED.pack(4))  # nothing else coming: the mark alone wakes it
    assert not incoming.wait()
    incoming.take_marks()
    assert spool_writer._commit(conn, [], replies_out, delete_through=incoming.moved_through)
    assert _seqs(conn) == [] and waiting(tmp_path / "r.spool") == (0, 0)
    for _ in range(3):
        replies_in.recv_bytes()
    assert not replies_in.poll(0)  # a transaction without batches answers nobody

    os.write(requests_out.fileno(), _frame(5, [["dlv_5"]]))  # the table emptied: seq goes on from 4
    incoming.wait()
    spool_writer._commit(conn, spool_writer._waiting_batches(incoming)[0], replies_out)
    assert _seqs(conn) == [5]


def test_a_mark_cut_in_two_is_read_whole_and_a_closed_pipe_is_let_go(tmp_path: Path) -> None:
    requests_in, _requests_out = multiprocessing.Pipe(duplex=False)
    moved_read, moved_write = os.pipe()
    incoming = spool_writer._Incoming(requests_in, moved_read)
    mark = MOVED.pack(7)
    os.write(moved_write, mark[:3])
    incoming.take_marks()
    assert incoming.moved_through == 0
    os.write(moved_write, mark[3:])
    incoming.take_marks()
    assert incoming.moved_through == 7
    os.close(moved_write)  # the applier and the receiver gone: not polled again (no busy loop)
    incoming.take_marks()
    assert incoming.moved_through == 7 and not incoming._either.poll(0)
