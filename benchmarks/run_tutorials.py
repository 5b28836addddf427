"""Run the tutorials (docs/tutorials/*.ipynb) end to end and record wall time and results.

Each notebook runs in a fresh Jupyter kernel (nbclient), in QUICK mode (``TF_ADMM_QUICK=1``:
a slice of the data, fewer epochs; what CI runs) and/or in full mode (the whole of MNIST, the
epochs the notebook states). For each run it keeps the wall time and the lines the notebook
printed that carry a result (accuracies, file sizes, LiteRT parity), and writes them to
``--out`` (one object per (notebook, mode), replaced when run again). The executed notebooks,
outputs included, go to ``--keep`` (default ``runs/tutorials``, where the docs site reads them);
the committed notebooks stay without outputs.

    python benchmarks/run_tutorials.py --mode quick             # what CI runs, timed
    python benchmarks/run_tutorials.py --mode full              # the numbers in docs/tutorials.md
    python benchmarks/run_tutorials.py --mode both --notebooks 01,02

Time it on an otherwise idle machine: the JSON records the CPU count and the load average at the
start of each run, so a contended run can be told apart.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TUTORIALS = os.path.join(ROOT, "docs", "tutorials")
# a printed line worth keeping: accuracies, sizes, parity, sparsity
RESULT_LINE = re.compile(r"accuracy|bytes|LiteRT vs Keras|sparsity|exact|agreement|rate", re.I)


def run_notebook(path: str, quick: bool, keep: str | None) -> dict:
    """Execute one notebook in a fresh kernel; its wall time and result lines."""
    import nbclient
    import nbformat

    os.environ["TF_ADMM_QUICK"] = "1" if quick else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=None,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(path)}},
    )
    load = os.getloadavg()[0]
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - start
    text = "".join(
        o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs
    )
    mode = "quick" if quick else "full"
    date = time.strftime("%Y-%m-%d")
    if keep:  # read by the docs site (docs/hooks/executed_tutorials.py)
        os.makedirs(keep, exist_ok=True)
        notebook.metadata["tf_admm_run"] = {"mode": mode, "date": date}
        name = os.path.basename(path).replace(".ipynb", f".{mode}.ipynb")
        nbformat.write(notebook, os.path.join(keep, name))
    return {
        "notebook": os.path.basename(path),
        "mode": mode,
        "wall_seconds": round(seconds, 1),
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "date": date,
        "results": [line.strip() for line in text.splitlines() if RESULT_LINE.search(line)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("quick", "full", "both"), default="quick")
    parser.add_argument(
        "--notebooks", default="", help="comma list of name prefixes, e.g. 01,03; default all"
    )
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "tutorial_runs.json"))
    parser.add_argument("--keep", default=os.path.join(ROOT, "runs", "tutorials"))
    args = parser.parse_args(argv)

    paths = sorted(glob.glob(os.path.join(TUTORIALS, "*.ipynb")))
    prefixes = [p for p in args.notebooks.split(",") if p]
    if prefixes:
        paths = [p for p in paths if any(os.path.basename(p).startswith(x) for x in prefixes)]
        if not paths:
            raise SystemExit(f"no tutorial starts with {prefixes}; in {TUTORIALS}")
    modes = {"quick": [True], "full": [False], "both": [True, False]}[args.mode]

    rows = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            rows = json.load(f)
    for path in paths:
        for quick in modes:
            row = run_notebook(path, quick, args.keep)
            print(f"{row['notebook']} {row['mode']}: {row['wall_seconds']:.0f} s", flush=True)
            for line in row["results"]:
                print("   ", line)
            rows = [r for r in rows if (r["notebook"], r["mode"]) != (row["notebook"], row["mode"])]
            rows.append(row)
            rows.sort(key=lambda r: (r["notebook"], r["mode"]))
            tmp = args.out + ".tmp"
            with open(tmp, "w") as f:
                json.dump(rows, f, indent=1)
                f.write("\n")
            os.replace(tmp, args.out)


if __name__ == "__main__":
    sys.exit(main())
