"""MultiWorkerMirroredStrategy: two worker processes on localhost train with UpdateADMM."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HELPER = os.path.join(os.path.dirname(__file__), "helpers", "multi_worker.py")


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return [str(p) for p in ports]


def _run(out, ports):
    processes = [
        subprocess.Popen(
            [sys.executable, HELPER, str(out), str(i), *ports],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(len(ports))
    ]
    for p in processes:
        try:
            text, _ = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in processes:
                q.kill()
            pytest.fail("a worker did not finish in 300 s")
        assert p.returncode == 0, text[-3000:]


def _load(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_two_workers_agree_with_each_other_and_with_one_worker(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    _run(two, _free_ports(2))
    _run(one, _free_ports(1))
    w0, w1 = _load(two / "worker_0.npz"), _load(two / "worker_1.npz")
    alone = _load(one / "worker_0.npz")
    assert set(w0) == set(w1) == set(alone)
    for key in w0:  # the two workers hold identical Z, U, masks, weights and counters
        np.testing.assert_array_equal(w0[key], w1[key], err_msg=key)
    # 3 epochs of 4 global batches, Z/U every 2 steps: 6 updates on every worker
    assert int(w0["admm_hidden/num_updates"]) == 6
    assert w0["admm_hidden/mask0"].mean() == 0.25 and w0["admm_conv/mask0"].mean() == 0.5
    for key in w0:  # and match one worker up to the order of the gradient sums
        np.testing.assert_allclose(w0[key], alone[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert (two / "chief_report.json").exists()
    assert not (two / "worker_1_report.json").exists()
