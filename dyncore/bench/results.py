"""Benchmark result files: :class:`Results` (records and the machine they were measured on),
written and read as CSV or JSON (the format ``results/README.md`` describes), and the machine's
description stored with them (Chapter 7)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .. import roofline
from ..utils import machine_report

FORMAT = "dyncore-bench/1"


def format_size(size: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in size)


@dataclass
class Results:
    """Benchmark records (one dict per case) and the machine they were measured on."""

    records: list[dict]
    machine: dict
    skipped: list[str] = field(default_factory=list)

    COLUMNS = ("op", "backend", "mode", "B", "C", "H", "W", "k", "dtype", "device", "median_s",
               "iqr_s", "runs", "peak_bytes", "flops", "bytes", "bound_s", "fraction_of_bound",
               "min_s", "speedup_vs_peer", "load", "peer_name")

    def select(self, **where) -> list[dict]:
        """Records whose fields equal ``where`` (e.g. ``op="ddf", backend="numba"``)."""
        return [r for r in self.records if all(r.get(k) == v for k, v in where.items())]

    def get(self, **where) -> dict:
        rows = self.select(**where)
        if len(rows) != 1:
            raise KeyError(f"{len(rows)} records match {where}")
        return rows[0]

    def table(self) -> str:
        """A plain-text table: one line per record."""
        head = (f"{'op':<10}{'backend':<8}{'mode':<9}{'size':<16}{'k':>2}{'median ms':>11}"
                f"{'peak MB':>9}{'of bound':>10}")
        lines = [head]
        for r in self.records:
            frac = r.get("fraction_of_bound")
            mem = r.get("peak_bytes")
            lines.append(
                f"{r['op']:<10}{r['backend']:<8}{r['mode']:<9}"
                f"{format_size((r['B'], r['C'], r['H'], r['W'])):<16}{r['k']:>2}"
                f"{r['median_s'] * 1e3:>11.4g}"
                f"{(f'{mem / 2**20:.1f}' if mem is not None else '-'):>9}"
                f"{(f'{frac:.1%}' if frac is not None and frac == frac else '-'):>10}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "machine": self.machine, "records": self.records,
                           "skipped": self.skipped}, indent=1, default=_json_default)

    def to_csv(self) -> str:
        buf = io.StringIO()
        for key, value in self.machine.items():  # the machine, as '# key: value' comment lines
            first, *more = str(value).splitlines() or [""]
            buf.write(f"# {key}: {first}\n")
            for line in more:  # a multi-line value continues on '#   ' lines
                buf.write(f"#   {line}\n")
        writer = csv.DictWriter(buf, fieldnames=self.COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in self.records:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self.COLUMNS})
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> str:
        """Write to ``path``: JSON for ``.json``, CSV (machine as ``#`` comment lines) for ``.csv``."""
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".json", ".csv"):
            raise ValueError(f"path must end in .json or .csv; got {path!r}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(path, "w") as f:
            f.write(self.to_json() if ext == ".json" else self.to_csv())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Results":
        """Read a file written by :meth:`save` (JSON or CSV)."""
        path = os.fspath(path)
        with open(path) as f:
            text = f.read()
        if path.lower().endswith(".json"):
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ValueError(f"{path} is not a {FORMAT} file (format={data.get('format')!r})")
            return cls(data["records"], data["machine"], data.get("skipped", []))
        machine, rows, key = {}, [], None
        for line in text.splitlines():
            if line.startswith("#   ") and key:
                machine[key] += "\n" + line[4:]
            elif line.startswith("# "):
                key, _, value = line[2:].partition(": ")
                machine[key.strip()] = value
            else:
                rows.append(line)
        records = []
        for r in csv.DictReader(rows):
            records.append({k: _parse_field(k, v) for k, v in r.items()})
        return cls(records, machine)


def _parse_field(key, value):
    if value == "":
        return None
    if key in ("B", "C", "H", "W", "k", "runs", "peak_bytes"):
        return int(float(value))
    if key in ("median_s", "iqr_s", "flops", "bytes", "bound_s", "fraction_of_bound", "min_s",
               "speedup_vs_peer", "load"):
        return float(value)
    return value


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def describe_machine(device: str = "cpu", limits: roofline.Machine | None = None) -> dict:
    """The machine description stored with every result file."""
    desc = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "device": str(device), "report": machine_report(),
            "torch_threads": torch.get_num_threads(), "numba_threads": _numba_threads(),
            "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        desc["device_name"] = torch.cuda.get_device_name(torch.device(device))
    else:
        desc["device_name"] = "cpu"
    if limits is not None:
        desc.update(bandwidth_bytes_per_s=limits.bandwidth, copy_bandwidth_bytes_per_s=limits.copy_bandwidth,
                    triad_bandwidth_bytes_per_s=limits.triad_bandwidth,
                    peak_flops_per_s=limits.peak_flops, limits_dtype=limits.dtype, threads=limits.threads)
    return desc


def _numba_threads() -> int:
    import numba
    return int(numba.get_num_threads())


def machine_limits(results: Results) -> roofline.Machine | None:
    """The :class:`dyncore.roofline.Machine` stored in a result file, if it was measured."""
    m = results.machine
    if "bandwidth_bytes_per_s" not in m or m["bandwidth_bytes_per_s"] in (None, ""):
        return None
    return roofline.Machine(str(m.get("device_name", m.get("device"))), str(m.get("limits_dtype", "")),
                            float(m["bandwidth_bytes_per_s"]), float(m["peak_flops_per_s"]),
                            int(float(m.get("threads", 0) or 0)),
                            float(m.get("copy_bandwidth_bytes_per_s", "nan") or "nan"),
                            float(m.get("triad_bandwidth_bytes_per_s", "nan") or "nan"))
