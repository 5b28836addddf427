"""benchmarks/frontier.py's bookkeeping: both sides averaged over the same seeds."""

import json

import frontier


def _row(seed, side, method, sparsity, accuracy, zipped):
    return {
        "network": "net",
        "seed": seed,
        "side": side,
        "method": method,
        "sparsity": sparsity,
        "litert_accuracy": accuracy,
        "raw_bytes": 2 * zipped,
        "zipped_bytes": zipped,
        "stripped_bytes": 2 * zipped - 7,
    }


def test_points_average_only_the_seeds_that_have_every_point(capsys, tmp_path):
    rows = [
        _row(0, "tfmot", "tfmot_gmp_int8", 0.9, 0.80, 100),
        _row(0, "tf_admm", "admm_int8", 0.9, 0.84, 90),
        _row(1, "tfmot", "tfmot_gmp_int8", 0.9, 0.82, 110),
        _row(1, "tf_admm", "admm_int8", 0.9, 0.86, 100),
        _row(2, "tfmot", "tfmot_gmp_int8", 0.9, 0.50, 10),  # seed 2 has no tf_admm point yet
        # a side added later, run on seed 0 only: it does not take seed 1 out of the others
        _row(0, "tfmot_cluster", "tfmot_cluster16_int8", 0.9, 0.83, 80),
    ]
    del rows[1]["stripped_bytes"]  # a row written before the field: no stripped figure
    assert {r["seed"] for r in frontier.complete(rows)} == {0, 1}
    by_method = {p["method"]: p for p in frontier.points(rows)}
    assert by_method["tfmot_gmp_int8"]["seeds"] == 2
    assert by_method["tfmot_cluster16_int8"]["seeds"] == 1
    assert by_method["tfmot_gmp_int8"]["accuracy"] == 81.0
    assert by_method["admm_int8"]["zipped_bytes"] == 95.0
    assert by_method["admm_int8"]["stripped_bytes"] is None
    assert by_method["tfmot_gmp_int8"]["stripped_bytes"] == 203.0
    out = tmp_path / "rows.json"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    frontier.table(str(out))
    text = capsys.readouterr().out
    assert "seeds with every point: [0, 1]" in text
    assert (
        "| net | tfmot_gmp_int8 at 0.9 (81.00) | 105 | admm_int8 at 0.9 (85.00, 95 B) | +4.00 |"
        in (text)
    )
    # stripped bytes: TFMOT's point has them, no tf_admm point does
    assert "| net | tfmot_gmp_int8 at 0.9 (81.00) | 203 | none | - |" in text
