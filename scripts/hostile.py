#!/usr/bin/env python3
"""Hostile-input campaign against the `landscape` binary (issue 13).

Builds hostile variants of a recorded run and runs `landscape` commands on
them, each in a fresh copy, under a time limit and a memory limit, then
classifies every command:

  ok-error       non-zero exit, with a message naming the file or option
  vague-error    non-zero exit, but the message does not name it
  ok / ok-warn   exit 0 where that is fine (or with a named warning)
  silent         exit 0 where an error or a named warning was expected, or
                 raw control characters / unescaped HTML from the input in
                 the output
  panic          exit 101 or "panicked at" on stderr
  abort/signal   killed by a signal (abort, segfault, the memory limit)
  hang           no answer within the time limit
  outside-write  a file outside the run (where planted symlinks point) was
                 created, changed or removed

and prints a table and the summary line
`inputs N, panics P, hangs H, silent S, outside-writes W`.
It exits with 1 when it finds a panic, an abort, a hang or an outside write.

Inputs: `--run DIR`, a run recorded by `landscape demo` (its surfaces, PCA
and report are used when present); without it, `--demo` records one first
(`landscape demo --epochs 5 --grid 9`, a minute or more), and otherwise
(and with `--quick`) the tiny real run of the fuzz corpus
(tests/fuzz/corpus) is used, with which the cases that evaluate the demo
model are skipped. `--quick` runs a subset in well under a minute.

Examples:
  landscape demo --out /tmp/demo && \\
  python3 scripts/hostile.py --landscape target/release/landscape --run /tmp/demo/mlp-digits
  python3 scripts/hostile.py --landscape target/release/landscape --quick

Python 3.11, standard library only. Every variant is built with a fixed
random seed, so a campaign is reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = "mlp 64-256-256-10 relu"
U64_MAX = "18446744073709551615"
# 2^63 + 313: the length of a grid of this many points overflows.
BIG = 9223372036854776121
CLASSES = [
    "outside-write",
    "hang",
    "panic",
    "abort/signal",
    "silent",
    "vague-error",
    "unexpected-error",
    "ok-error",
    "ok-warn",
    "ok",
    "skipped",
]
# Raw C0 controls (but tab, newline, carriage return) and DEL.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# ---------------------------------------------------------------------------
# Arrow IPC: where the buffers of each record batch are (a minimal reader of
# the footer and message flatbuffers, enough to plant values).


def _table(buf: bytes, pos: int) -> Callable[[int], int | None]:
    vtable = pos - struct.unpack_from("<i", buf, pos)[0]
    vlen = struct.unpack_from("<H", buf, vtable)[0]

    def field_pos(i: int) -> int | None:
        o = 4 + 2 * i
        if o >= vlen:
            return None
        off = struct.unpack_from("<H", buf, vtable + o)[0]
        return pos + off if off else None

    return field_pos


def _deref(buf: bytes, pos: int) -> int:
    return pos + struct.unpack_from("<I", buf, pos)[0]


def ipc_buffers(data: bytes) -> list[list[tuple[int, int]]]:
    """(file offset, length) of every buffer, for every record batch."""
    if data[:6] != b"ARROW1":
        raise ValueError("not an Arrow IPC file")
    footer_len = struct.unpack_from("<i", data, len(data) - 10)[0]
    footer = data[len(data) - 10 - footer_len : len(data) - 10]
    root = _table(footer, struct.unpack_from("<I", footer, 0)[0])
    vec = _deref(footer, root(3))  # Footer.recordBatches
    batches = []
    for i in range(struct.unpack_from("<I", footer, vec)[0]):
        offset, meta_len, _, _ = struct.unpack_from("<qiiq", footer, vec + 4 + 24 * i)
        start = offset + (8 if data[offset : offset + 4] == b"\xff" * 4 else 4)
        msg = data[start : offset + meta_len]
        message = _table(msg, struct.unpack_from("<I", msg, 0)[0])
        batch = _table(msg, _deref(msg, message(2)))  # Message.header
        bufs = _deref(msg, batch(2))  # RecordBatch.buffers
        body = offset + meta_len
        batches.append(
            [
                (body + o, n)
                for o, n in (
                    struct.unpack_from("<qq", msg, bufs + 4 + 16 * j)
                    for j in range(struct.unpack_from("<I", msg, bufs)[0])
                )
            ]
        )
    return batches


def plant(path: Path, batch: int, buffer: int, fmt: str, values: list[float]) -> None:
    """Overwrites the first values of a buffer of an Arrow IPC file."""
    data = bytearray(path.read_bytes())
    start, length = ipc_buffers(bytes(data))[batch][buffer]
    size = struct.calcsize(fmt)
    if length < size * len(values):
        raise ValueError(f"{path}: buffer {buffer} holds {length} bytes")
    for i, v in enumerate(values):
        struct.pack_into(fmt, data, start + i * size, v)
    replace(path, bytes(data))


# ---------------------------------------------------------------------------
# File helpers.


def replace(path: Path, data: bytes) -> None:
    """Writes a new file at `path` (never through a link or into a shared inode)."""
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(data)


def edit_json(path: Path, edit: Callable[[dict], object]) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    replace(path, json.dumps(doc, indent=2).encode())


def raw_json(path: Path, old: str, new: str) -> None:
    """Replaces text in a JSON file (for values JSON cannot hold: NaN, 1e999)."""
    text = path.read_text()
    if old not in text:
        raise ValueError(f"{path}: no {old!r}")
    replace(path, text.replace(old, new, 1).encode())


def flip(path: Path, rng: random.Random, n: int = 1) -> str:
    data = bytearray(path.read_bytes())
    spots = []
    for _ in range(n):
        i = rng.randrange(len(data))
        bit = rng.randrange(8)
        data[i] ^= 1 << bit
        spots.append(f"byte {i} bit {bit}")
    replace(path, bytes(data))
    return ", ".join(spots)


def link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.symlink_to(target)


def fifo(path: Path) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)


def tree_state(root: Path) -> dict[str, tuple]:
    """Path -> (kind, size, digest) of everything under `root`, links unfollowed."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                state[rel] = ("link", os.readlink(p))
            elif p.is_file():
                state[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                # A file created and removed again (a segment written
                # through a planted link, then cleaned up) leaves only the
                # directory's modification time changed.
                state[rel] = ("dir", p.stat().st_mtime_ns)
    state["."] = ("dir", root.stat().st_mtime_ns)
    return state


# ---------------------------------------------------------------------------
# Cases.


@dataclass
class Step:
    """One command of a case: `args` after the binary, with `{run}`,
    `{case}`, `{outside}` and `{shards}` placeholders."""

    args: list[str]
    expect: str = "error"  # error | error-or-warn | ok | any
    names: tuple[str, ...] = ()  # what the message must name (any of)
    hang: bool = False  # a suspected hang: the short time limit
    pipe: str = ""  # "stdout" or "both": the output is a pipe closed at once
    html: str = ""  # text that must not appear unescaped in report/index.html
    timeout_ok: bool = False  # stopping it at the limit is fine (a long job)
    timeout: float | None = None  # its own time limit


@dataclass
class Case:
    name: str
    group: str
    steps: list[Step]
    prepare: Callable[["Ctx"], None] = lambda ctx: None
    quick: bool = False
    needs_demo: bool = False  # evaluates the demo model (`landscape surface`)


@dataclass
class Ctx:
    """Paths of one case: a fresh copy of the pristine run and shards."""

    case: Path
    run: Path
    shards: Path
    outside: Path
    rng: random.Random
    notes: list[str] = field(default_factory=list)

    def snap(self, i: int) -> Path:
        return self.run / "snapshots" / f"{i:06d}.arrow"

    def snaps(self) -> list[Path]:
        return sorted((self.run / "snapshots").glob("[0-9]*.arrow"))

    def surface(self) -> Path:
        """A whole 2-D surface of the run."""
        for name in ("filter-2d", "grid2d"):
            if (self.run / "surfaces" / name / "surface.json").exists():
                return self.run / "surfaces" / name
        return sorted((self.run / "surfaces").iterdir())[0]


def cases() -> list[Case]:
    out: list[Case] = []

    def case(name, group, steps, prepare=lambda ctx: None, quick=False, demo=False):
        out.append(Case(name, group, steps if isinstance(steps, list) else [steps], prepare, quick, demo))

    V = "{outside}/victim.txt"
    D = "{outside}/victim-dir"

    # -- symlinks planted at output names and directories, pointing outside.
    def plant_links(pairs):
        def prepare(ctx: Ctx):
            for rel, target in pairs:
                t = target.replace("{outside}", str(ctx.outside))
                link(ctx.run / rel, Path(t))

        return prepare

    report = Step(["report", "{run}"], expect="any")
    for rel, target, step, quick in [
        ("report", D, report, True),
        ("report/index.html", V, report, True),
        ("report/.index.html.tmp", V, report, False),
        ("pca", D, Step(["pca", "{run}"], expect="any"), True),
        ("pca/pca.json", V, Step(["pca", "{run}"], expect="any"), False),
        ("pca/.pca.json.tmp", V, Step(["pca", "{run}"], expect="any"), True),
        ("pca/.pca-variance.parquet.tmp", V, Step(["pca", "{run}"], expect="any"), False),
        ("export", D, Step(["export", "{run}"], expect="any"), True),
        ("export/trajectory.parquet", V, Step(["export", "{run}"], expect="any"), False),
        ("export/.trajectory.parquet.tmp", V, Step(["export", "{run}"], expect="any"), False),
    ]:
        case(f"symlink {rel} -> outside", "symlink", step, plant_links([(rel, target)]), quick)

    def every_report_file(ctx: Ctx):
        names = [p.name for p in (ctx.case / "report-names").iterdir()]
        for n in names:
            link(ctx.run / "report" / n, ctx.outside / "victim.txt")
            link(ctx.run / "report" / f".{n}.tmp", ctx.outside / "victim.txt")

    case("symlink at every report file and temp name", "symlink", report, every_report_file)

    def surface_link(rel, target):
        def prepare(ctx: Ctx):
            s = ctx.surface().relative_to(ctx.run)
            t = target.replace("{outside}", str(ctx.outside))
            link(ctx.run / s / rel, Path(t))
            ctx.notes.append(str(s))

        return prepare

    vtk = Step(["vtk", "{surface}"], expect="any")
    case("symlink surface.vtk -> outside", "symlink", vtk, surface_link("surface.vtk", V), True)
    case("symlink .surface.vtk.tmp -> outside", "symlink", vtk, surface_link(".surface.vtk.tmp", V))

    def link_new_surface(rel, target):
        def prepare(ctx: Ctx):
            t = target.replace("{outside}", str(ctx.outside))
            link(ctx.run / rel, Path(t))

        return prepare

    surf = ["surface", "{run}", "--grid", "3", "--out"]
    case(
        "symlink surfaces/NAME -> outside dir",
        "symlink",
        Step(surf + ["{run}/surfaces/evil"], expect="any"),
        link_new_surface("surfaces/evil", D),
        demo=True,
    )
    case(
        "symlink surfaces/NAME/points -> outside dir",
        "symlink",
        Step(surf + ["{run}/surfaces/evil"], expect="any"),
        link_new_surface("surfaces/evil/points", D),
        demo=True,
    )
    case(
        "symlink surfaces/NAME/.surface.json.tmp -> outside",
        "symlink",
        Step(surf + ["{run}/surfaces/evil"], expect="any"),
        link_new_surface("surfaces/evil/.surface.json.tmp", V),
        demo=True,
    )

    def merge_out_link(ctx: Ctx):
        link(ctx.case / "merged", ctx.outside / "victim-dir")
        (ctx.case / "merged-parent").mkdir()
        link(ctx.case / "merged-parent" / "out", ctx.outside / "victim-dir")

    case(
        "symlink planted at merge output dir",
        "symlink",
        Step(["merge", "{shards}/s0", "{shards}/s1", "--out", "{case}/merged-parent/out"], expect="any"),
        merge_out_link,
        True,
    )

    def merge_points_link(ctx: Ctx):
        (ctx.case / "m").mkdir()
        link(ctx.case / "m" / "directions.parquet", ctx.outside / "victim.txt")
        link(ctx.case / "m" / "surface.parquet", ctx.outside / "victim.txt")
        link(ctx.case / "m" / "sharpness.json", ctx.outside / "victim.txt")

    case(
        "symlinks at merge output files",
        "symlink",
        Step(["merge", "{shards}/s0", "{shards}/s1", "--out", "{case}/m"], expect="any"),
        merge_points_link,
    )

    def lock_link(ctx: Ctx):
        run = ctx.case / "demo" / "mlp-digits"
        run.mkdir(parents=True)
        link(run / ".lock", ctx.outside / "victim.txt")

    case(
        "symlink .lock -> outside (recorder)",
        "symlink",
        Step(["demo", "--out", "{case}/demo", "--epochs", "3", "--grid", "3"], expect="any", timeout_ok=True, timeout=20),
        lock_link,
        demo=True,
    )

    def demo_dir_links(ctx: Ctx):
        run = ctx.case / "demo" / "mlp-digits"
        run.mkdir(parents=True)
        link(run / "snapshots", ctx.outside / "victim-dir")
        link(run / "metrics.arrow", ctx.outside / "victim.txt")
        link(run / "surfaces", ctx.outside / "victim-dir")

    case(
        "symlinks snapshots/, metrics.arrow, surfaces/ -> outside (recorder, demo)",
        "symlink",
        Step(["demo", "--out", "{case}/demo", "--epochs", "3", "--grid", "3"], expect="any", timeout_ok=True, timeout=20),
        demo_dir_links,
        demo=True,
    )

    # -- hang inputs: FIFOs and endless devices where files are read.
    info = lambda **kw: Step(["info", "{run}"], **kw)  # noqa: E731
    for rel, quick in [
        ("manifest.json", True),
        ("snapshots/000001.arrow", True),
        ("metrics.arrow", False),
    ]:
        case(
            f"FIFO as {rel}",
            "hang",
            info(names=(rel.split("/")[-1],), hang=True),
            lambda ctx, rel=rel: fifo(ctx.run / rel),
            quick,
        )
    for dev, rel, quick in [
        ("/dev/zero", "manifest.json", True),
        ("/dev/urandom", "manifest.json", False),
        ("/dev/zero", "metrics.arrow", True),
        ("/dev/zero", "snapshots/000001.arrow", False),
    ]:
        case(
            f"{dev} symlinked as {rel}",
            "hang",
            info(names=(rel.split("/")[-1],), hang=True),
            lambda ctx, dev=dev, rel=rel: link(ctx.run / rel, Path(dev)),
            quick,
        )

    def fifo_in_surface(rel):
        return lambda ctx: (fifo(ctx.surface() / rel), ctx.notes.append(str(ctx.surface().name)))

    for rel in ("surface.json", "surface.parquet"):
        case(f"FIFO as surfaces/NAME/{rel}", "hang", Step(["report", "{run}"], names=(rel,), hang=True), fifo_in_surface(rel))
    case("FIFO as pca/pca.json", "hang", Step(["report", "{run}"], names=("pca.json",), hang=True), lambda ctx: fifo(ctx.run / "pca" / "pca.json"))
    case(
        "FIFO as a shard's directions.parquet",
        "hang",
        Step(["merge", "{shards}/s0", "{shards}/s1", "--out", "{case}/m"], names=("directions.parquet",), hang=True),
        lambda ctx: fifo(ctx.shards / "s0" / "directions.parquet"),
    )

    # -- closed pipes: `landscape info RUN | head -c1` (the reader gone at once).
    for args, quick in [
        (["info", "{run}"], True),
        (["pca", "{run}", "--out", "{case}/pca"], False),
        (["export", "{run}", "--out", "{case}/export"], False),
        (["--help"], True),
        (["info", "--help"], False),
        (["--version"], False),
    ]:
        case(f"closed stdout: {' '.join(args[:1])} {' '.join(a for a in args[1:] if a.startswith('--'))} | head -c1", "pipe", Step(args, expect="ok", pipe="stdout"), quick=quick)
    case(
        "closed stdout and stderr: info MISSING 2>&1 | head -c1",
        "pipe",
        Step(["info", "{case}/missing"], expect="error", pipe="both"),
        quick=True,
    )

    # -- option values.
    for args, names, quick, demo in [
        (["surface", "{run}", "--out", "{case}/s", "--grid", "4000000000"], ("grid", "axis"), True, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", U64_MAX], ("grid", "axis"), False, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "0"], ("grid", "axis"), False, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--range", "nan"], ("range", "axis"), False, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--range", "inf"], ("range", "axis"), False, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--range=-1"], ("range", "axis"), False, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--range", "1e308"], ("range", "axis"), True, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--snapshot", U64_MAX], ("snapshot",), False, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--threads", U64_MAX], ("threads",), True, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--threads", "100000"], ("threads",), False, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--shard", "0/0"], ("shard",), False, True),
        (["surface", "{run}", "--out", "{case}/s", "--grid", "3", "--shard", f"0/{U64_MAX}"], ("shard",), False, True),
        (["report", "{run}", "--levels", U64_MAX], ("levels",), True, False),
        (["report", "{run}", "--levels", "0"], ("levels",), False, False),
        (["pca", "{run}", "--out", "{case}/p", "--chunk", U64_MAX], (), True, False),
        (["pca", "{run}", "--out", "{case}/p", "--chunk", "0"], ("chunk",), False, False),
        (["pca", "{run}", "--out", "{case}/p", "-k", U64_MAX], ("component",), True, False),
        (["pca", "{run}", "--out", "{case}/p", "--tensor", "no.such"], ("no.such",), False, False),
        (["export", "{run}", "--out", "{case}/e", "--chunk", "0"], ("chunk",), False, False),
        (["export", "{run}", "--out", "{case}/e", "--chunk", U64_MAX], (), False, False),
        (["vtk", "{surface}", "--out", "{case}/x.vtk", "--split", "no-such-split"], ("no-such-split",), False, False),
        (["merge", "{shards}/s0", "{shards}/s0", "--out", "{case}/m"], ("twice", "s0"), True, False),
        (["merge", "{shards}/s0", "{shards}/s1", "--out", "{shards}/s0"], ("s0",), False, False),
    ]:
        shown, skip = [], False
        for a in args:
            if skip or a == "--out":
                skip = not skip
                continue
            shown.append({"{run}": "RUN", "{surface}": "SURFACE"}.get(a, a.replace("{shards}/", "")))
        # No name to give: a value that is merely larger than needed may be
        # accepted (a chunk longer than every tensor); -k must be refused
        # or warned about.
        expect = "any" if not names else "error-or-warn" if "-k" in args else "error"
        case(" ".join(shown), "option", Step(args, expect=expect, names=names), quick=quick, demo=demo)

    case(
        "surface --range 1e30 (finite centre, infinite losses), then report and vtk",
        "nan",
        [
            Step(["surface", "{run}", "--out", "{run}/surfaces/huge", "--grid", "3", "--range", "1e30"], expect="any"),
            Step(["report", "{run}"], expect="any"),
            Step(["vtk", "{run}/surfaces/huge", "--out", "{case}/huge.vtk"], expect="any"),
        ],
        quick=False,
        demo=True,
    )

    # -- surface.json: NaN-like and huge ranges, huge grids, shards.
    def spec_edit(edit):
        def prepare(ctx: Ctx):
            edit_json(ctx.surface() / "surface.json", edit)

        return prepare

    def spec_raw(old, new):
        return lambda ctx: raw_json(ctx.surface() / "surface.json", old, new)

    def axis(name, key, value):
        def edit(d):
            d["grid"][name][key] = value

        return edit

    load = [Step(["vtk", "{surface}", "--out", "{case}/x.vtk"], names=("surface.json",)), Step(["report", "{run}"], expect="error-or-warn", names=("surface.json",))]
    for title, prep, quick in [
        ("grid x.n = 10^12", spec_edit(axis("x", "n", 10**12)), True),
        ("grid x.n = 2^63+313", spec_edit(axis("x", "n", BIG)), True),
        ("grid x.n = 10^7, y.n = 10^7", spec_edit(lambda d: (d["grid"]["x"].update(n=10**7), d["grid"]["y"] and d["grid"]["y"].update(n=10**7))), False),
        ("grid x.n = 0", spec_edit(axis("x", "n", 0)), False),
        ("grid x.n = -1", spec_edit(axis("x", "n", -1)), False),
        ("grid x.min = NaN (raw token)", spec_raw('"min": -1.0', '"min": NaN'), False),
        ("grid x.max = 1e999", spec_raw('"max": 1.0', '"max": 1e999'), False),
        ("grid x = -1e308..1e308 (span overflows)", spec_edit(lambda d: d["grid"]["x"].update(min=-1e308, max=1e308)), True),
        ("grid x.min = \"NaN\"", spec_edit(axis("x", "min", "NaN")), False),
        ("grid x.min = x.max", spec_edit(lambda d: d["grid"]["x"].update(min=1.0, max=1.0)), False),
        ("schema_version 99", spec_edit(lambda d: d.update(schema_version=99)), False),
        ("format foreign", spec_edit(lambda d: d.update(format="something-else")), False),
        ("sharpness_epsilon -1", spec_edit(lambda d: d.update(sharpness_epsilon=-1)), False),
        ("sharpness_epsilon 1e308", spec_edit(lambda d: d.update(sharpness_epsilon=1e308)), False),
        ("shard [0,0]", spec_edit(lambda d: d.update(shard=[0, 0])), True),
        ("empty file", lambda ctx: replace(ctx.surface() / "surface.json", b""), False),
    ]:
        case(f"surface.json {title}", "surface.json", load, prep, quick)

    def shard_spec(which, value):
        def prepare(ctx: Ctx):
            edit_json(ctx.shards / which / "surface.json", lambda d: d.update(shard=value))

        return prepare

    merge = Step(["merge", "{shards}/s0", "{shards}/s1", "--out", "{case}/m"], names=("surface.json", "shard", "s0", "s1"))
    for value, quick in [([0, 0], True), ([1, 2], False), ([0, 3], False), ([0, int(U64_MAX)], False), ("0/2", False), (None, False)]:
        case(f"shard s0 = {json.dumps(value)} in surface.json, merge", "shard", merge, shard_spec("s0", value), quick)

    def shard_grid(ctx: Ctx):
        edit_json(ctx.shards / "s1" / "surface.json", lambda d: d["grid"]["x"].update(n=d["grid"]["x"]["n"] + 1))

    case("shard s1 of another grid, merge", "shard", merge, shard_grid)

    def shard_flip(rel, n):
        def prepare(ctx: Ctx):
            ctx.notes.append(flip(ctx.shards / "s1" / rel, ctx.rng, n))

        return prepare

    for i in range(4):
        case(f"shard s1 surface.parquet {i + 1} flipped bits, merge", "flip", merge, shard_flip("surface.parquet", i + 1), i == 0)

    # -- flipped bytes in snapshots, metrics, segments, result tables.
    for i in range(6):
        def snap_flip(ctx: Ctx, i=i):
            s = ctx.rng.choice(ctx.snaps())
            ctx.notes.append(f"{s.name} {flip(s, ctx.rng, 1 + i // 2)}")

        case(f"snapshot: flipped bits #{i + 1}", "flip", Step(["export", "{run}", "--out", "{case}/e"], names=(".arrow",)), snap_flip, i < 2)
    for i in range(4):
        def metrics_flip(ctx: Ctx, i=i):
            ctx.notes.append(flip(ctx.run / "metrics.arrow", ctx.rng, 1 + i))

        case(f"metrics.arrow: flipped bits #{i + 1}", "flip", Step(["export", "{run}", "--out", "{case}/e"], names=("metrics.arrow",)), metrics_flip, i == 0)
    for i in range(3):
        def result_flip(ctx: Ctx, i=i):
            ctx.notes.append(flip(ctx.surface() / "surface.parquet", ctx.rng, 1 + i))

        case(f"surface.parquet: flipped bits #{i + 1}", "flip", Step(["vtk", "{surface}", "--out", "{case}/x.vtk"], names=("surface.parquet",)), result_flip)
    for i in range(4):
        def segment_flip(ctx: Ctx, i=i):
            segs = sorted((ctx.run / "surfaces" / "partial" / "points").glob("*.arrow"))
            if not segs:
                raise Skip("no unfinished surface (needs the demo model)")
            s = ctx.rng.choice(segs)
            ctx.notes.append(f"{s.name} {flip(s, ctx.rng, 1 + i)}")

        case(
            f"segment: flipped bits #{i + 1}, resume",
            "flip",
            Step(["surface", "{run}", "--out", "{run}/surfaces/partial", "--grid", "21"], names=(".arrow",)),
            segment_flip,
            demo=True,
        )

    # -- NaN / Inf / 1e308 planted in values.
    def nan_snapshot(values, which=-1):
        def prepare(ctx: Ctx):
            s = ctx.snaps()[which]
            plant(s, 1, 1, "<f", values)  # fc1.weight (second tensor), its values
            ctx.notes.append(s.name)

        return prepare

    nan_steps = [
        Step(["info", "{run}"], expect="any"),
        Step(["pca", "{run}", "--out", "{case}/p"], expect="error-or-warn", names=(".arrow", "NaN", "finite")),
        Step(["export", "{run}", "--out", "{case}/e"], expect="any"),
    ]
    for title, values, quick in [("NaN", [math.nan], True), ("+Inf", [math.inf], False), ("3.4e38 twice", [3.4e38, -3.4e38], False)]:
        case(f"{title} planted in the last snapshot", "nan", nan_steps, nan_snapshot(values), quick)
    case(
        "NaN in the last snapshot, then surface around it and report",
        "nan",
        [
            Step(["surface", "{run}", "--out", "{run}/surfaces/nan", "--grid", "3"], expect="error-or-warn", names=(".arrow", "NaN", "finite")),
            Step(["report", "{run}"], expect="any"),
        ],
        nan_snapshot([math.nan]),
        demo=True,
    )

    def nan_metrics(values):
        def prepare(ctx: Ctx):
            plant(ctx.run / "metrics.arrow", 0, 10, "<d", values)  # the `value` column

        return prepare

    for title, values, quick in [("NaN", [math.nan, math.inf, -math.inf], True), ("1e308", [1e308, -1e308, 5e-324], False)]:
        case(f"metrics: {title} values, report", "nan", Step(["report", "{run}"], expect="any"), nan_metrics(values), quick)

    def nan_segments(values):
        def prepare(ctx: Ctx):
            segs = sorted((ctx.run / "surfaces" / "partial" / "points").glob("*.arrow"))
            if not segs:
                raise Skip("no unfinished surface (needs the demo model)")
            plant(segs[0], 0, 14, "<d", values)  # the `loss` column
            ctx.notes.append(segs[0].name)

        return prepare

    for title, values in [("NaN/Inf/1e308", [math.nan, math.inf, 1e308]), ("-Inf/-1e308", [-math.inf, -1e308])]:
        case(
            f"segments: {title} losses, resumed, then vtk and report",
            "nan",
            [
                Step(["surface", "{run}", "--out", "{run}/surfaces/partial", "--grid", "21"], expect="any"),
                Step(["vtk", "{run}/surfaces/partial", "--out", "{case}/p.vtk"], expect="any"),
                Step(["report", "{run}"], expect="any"),
            ],
            nan_segments(values),
            demo=True,
        )

    # -- pca.json: empty and NaN fields (the report reads it).
    def pca_edit(edit):
        return lambda ctx: edit_json(ctx.run / "pca" / "pca.json", edit)

    rep = Step(["report", "{run}"], expect="error-or-warn", names=("pca.json",))
    for title, prep, quick in [
        ("path = []", pca_edit(lambda d: d.update(path=[])), True),
        ("coords = []", pca_edit(lambda d: [p.update(coords=[]) for p in d["path"]]), False),
        ("explained_variance_ratio = []", pca_edit(lambda d: d.update(explained_variance_ratio=[], explained_variance=[])), False),
        ("tensors = []", pca_edit(lambda d: d.update(tensors=[])), False),
        ("NaN coordinates (raw token)", lambda ctx: raw_json(ctx.run / "pca" / "pca.json", '"coords": [', '"coords": [NaN, '), False),
        ("plane_ratio = 1e308, ratios -1", pca_edit(lambda d: d.update(plane_ratio=1e308, explained_variance_ratio=[-1.0, -1.0])), True),
        ("coords 1e308", pca_edit(lambda d: [p.update(coords=[1e308, -1e308]) for p in d["path"]]), False),
        ("empty file", lambda ctx: replace(ctx.run / "pca" / "pca.json", b""), False),
        ("schema_version 99", pca_edit(lambda d: d.update(schema_version=99)), False),
    ]:
        case(f"pca.json {title}", "pca.json", rep, prep, quick)

    # -- the manifest: versions, shapes, dtypes, control characters.
    def man(edit):
        return lambda ctx: edit_json(ctx.run / "manifest.json", edit)

    def tensor(i, **kv):
        return man(lambda d: d["tensors"][i].update(**kv))

    for title, prep, step, quick in [
        ("schema_version 99", man(lambda d: d.update(schema_version=99)), info(names=("manifest.json",)), True),
        ("schema_version -1", man(lambda d: d.update(schema_version=-1)), info(names=("manifest.json",)), True),
        ('schema_version "1"', man(lambda d: d.update(schema_version="1")), info(names=("manifest.json",)), True),
        ("schema_version 2^32", man(lambda d: d.update(schema_version=2**32)), info(names=("manifest.json",)), False),
        ("format foreign", man(lambda d: d.update(format="x")), info(names=("manifest.json",)), False),
        ("shape of tensor 1 transposed (same numel)", None, Step(["surface", "{run}", "--out", "{case}/s", "--grid", "3"], names=("fc1.weight",)), False),
        ("shape [-a, -b] (same numel)", None, info(names=("manifest.json",)), False),
        ("shape [2^32, 2^32] (overflows)", tensor(1, shape=[2**32, 2**32]), info(names=("manifest.json",)), True),
        ("numel + 1", None, info(names=("manifest.json",)), False),
        ("dtype int64", tensor(1, dtype="int64"), Step(["surface", "{run}", "--out", "{case}/s", "--grid", "3"], names=("int64", "dtype")), False),
        ("dtype bogus", tensor(1, dtype="bogus"), Step(["surface", "{run}", "--out", "{case}/s", "--grid", "3"], names=("bogus",)), False),
        ("storage_dtype float64 (files are float32)", man(lambda d: d.update(storage_dtype="float64")), info(names=(".arrow",)), False),
        ("tensors = []", man(lambda d: d.update(tensors=[])), info(names=(".arrow", "manifest.json")), False),
        ("a tensor removed", man(lambda d: d["tensors"].pop()), info(names=(".arrow", "manifest.json")), False),
        ("run_id changed", man(lambda d: d.update(run_id=d["run_id"] + "x")), info(names=(".arrow",)), False),
        ("empty file", lambda ctx: replace(ctx.run / "manifest.json", b""), info(names=("manifest.json",)), False),
        ("a directory", lambda ctx: (ctx.run / "manifest.json").unlink() or (ctx.run / "manifest.json").mkdir(), info(names=("manifest.json",)), False),
        ("nested 100000 deep", lambda ctx: replace(ctx.run / "manifest.json", b"[" * 100000 + b"]" * 100000), info(names=("manifest.json",)), False),
    ]:
        if prep is None:
            prep = {
                "shape of tensor 1 transposed (same numel)": man(lambda d: d["tensors"][1].update(shape=d["tensors"][1]["shape"][::-1])),
                "shape [-a, -b] (same numel)": man(lambda d: d["tensors"][1].update(shape=[-x for x in d["tensors"][1]["shape"]])),
                "numel + 1": man(lambda d: d["tensors"][1].update(numel=d["tensors"][1]["numel"] + 1)),
            }[title]
        if step.args[0] == "surface":
            case(f"manifest {title}", "manifest", step, prep, quick, demo=True)
        else:
            case(f"manifest {title}", "manifest", step, prep, quick)

    def missing_middle(ctx: Ctx):
        s = ctx.snaps()
        s[len(s) // 2].unlink()
        ctx.notes.append(s[len(s) // 2].name)

    case(
        "a missing middle snapshot",
        "manifest",
        [Step(["info", "{run}"], expect="error-or-warn", names=("snapshot",)), Step(["pca", "{run}", "--out", "{case}/p"], expect="error-or-warn", names=("snapshot",))],
        missing_middle,
        True,
    )

    def extra_snapshot(ctx: Ctx):
        s = ctx.snaps()
        shutil.copy(s[0], ctx.run / "snapshots" / f"{len(s) + 5:06d}.arrow")

    case("a snapshot copied under another number", "manifest", info(names=(".arrow",)), extra_snapshot)

    # -- control characters and markup in names.
    esc = "\u001b]0;pwned\u0007\u001b[2J"

    def rename_tensor(new_first):
        def edit(d):
            d["tensors"][0]["name"] = new_first + d["tensors"][0]["name"]

        return man(edit)

    case("control characters in a tensor name, info", "names", Step(["info", "{run}"], expect="error-or-warn", names=("control", "name")), rename_tensor("\u0001" + esc), True)
    case("control characters in user metadata (model), surface", "names", Step(["surface", "{run}", "--out", "{case}/s", "--grid", "3"], names=("model",)), man(lambda d: d["user"].update(model=esc + "x")), demo=True)
    case("control characters in the run id", "names", Step(["info", "{run}"], names=(".arrow",)), man(lambda d: d.update(run_id=d["run_id"] + esc)))

    def metric_name(new: bytes):
        def prepare(ctx: Ctx):
            p = ctx.run / "metrics.arrow"
            data = p.read_bytes()
            names = [m.group(0) for m in re.finditer(rb"[a-z_]{4,}", data) if m.group(0) not in (b"snapshot", b"epoch", b"step", b"name", b"value", b"unix_time")]
            if not names:
                raise Skip("no metric name found")
            old = names[0]
            repl = (new + b"x" * len(old))[: len(old)]
            replace(p, data.replace(old, repl))
            ctx.notes.append(f"{old.decode()} -> {repl!r}")

        return prepare

    case("control characters in a metric name, info", "names", Step(["info", "{run}"], expect="error-or-warn", names=("control", "metric")), metric_name(b"\x1b[2J\x07"), True)
    case("markup in a metric name, report", "names", Step(["report", "{run}"], expect="any", html="<s>o</s>"), metric_name(b"<s>o</s>"))
    case("markup in a tensor name, report", "names", Step(["report", "{run}"], expect="any", html="<s>o</s>"), rename_tensor("<s>o</s>"))

    def evil_surface_name(name):
        def prepare(ctx: Ctx):
            shutil.copytree(ctx.surface(), ctx.run / "surfaces" / name)

        return prepare

    case("markup in a surface directory name, report", "names", Step(["report", "{run}"], expect="any", html="<img src=x onerror=alert(1)>"), evil_surface_name("<img src=x onerror=alert(1)>"), True)
    case("control characters in a surface directory name, report", "names", Step(["report", "{run}"], expect="any"), evil_surface_name("evil\u001b[2J\u0007"))
    return out


class Skip(Exception):
    """A case that cannot be built from this run."""


# ---------------------------------------------------------------------------
# Running.


@dataclass
class Result:
    case: str
    group: str
    step: str
    cls: str
    rc: int | None
    seconds: float
    detail: str


def limit_memory(gib: float):
    def preexec():
        lim = int(gib * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()

    return preexec


def run_step(binary: Path, args: list[str], step: Step, timeout: float, mem_gib: float, cwd: Path) -> tuple[int | None, str, str, bool]:
    env = dict(os.environ, NO_COLOR="1", RUST_BACKTRACE="0")
    env.pop("RUST_LOG", None)
    stdout = subprocess.PIPE
    stderr = subprocess.PIPE
    if step.pipe:
        r, w = os.pipe()
        os.close(r)  # the reader is gone before anything is written
        stdout = w
        if step.pipe == "both":
            stderr = w
    p = subprocess.Popen([str(binary), *args], stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=cwd, env=env, preexec_fn=limit_memory(mem_gib))
    if step.pipe:
        os.close(w)
    try:
        out, err = p.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        timed_out = True
    dec = lambda b: (b or b"").decode("utf-8", "replace")  # noqa: E731
    return p.returncode, dec(out), dec(err), timed_out


def classify(step: Step, rc, out: str, err: str, timed_out: bool, outside_changed: list[str], html_problem: str) -> tuple[str, str]:
    first = (err.strip().splitlines() or [""])[-1][:160]
    if outside_changed:
        return "outside-write", "outside changed: " + ", ".join(outside_changed[:3])
    if timed_out:
        return ("ok", "stopped at the time limit") if step.timeout_ok else ("hang", "no answer in time")
    if rc == 101 or "panicked at" in err:
        m = re.search(r"panicked at ([^\n]*)\n([^\n]*)", err)
        return "panic", (f"{m.group(1)} {m.group(2)}" if m else f"exit {rc} {first}")[:200]
    if "out of memory" in err or "memory allocation of" in err:
        return "hang", f"exhausted the memory limit (unbounded reading or allocation): {first}"
    if rc is not None and (rc < 0 or rc > 128):
        sig = -rc if rc < 0 else rc - 128
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return "abort/signal", f"{name} {first}"
    if html_problem:
        return "silent", html_problem
    ctrl = CONTROL.search(out) or CONTROL.search(err)
    if ctrl:
        return "silent", f"raw control character {ctrl.group(0)!r} in the output"
    named = any(n.lower() in err.lower() for n in step.names) if step.names else True
    if rc == 0:
        if step.expect in ("ok", "any"):
            return "ok", ""
        if step.expect == "error-or-warn" and "warn" in err.lower() and named:
            return "ok-warn", first
        return "silent", "exit 0" + (f"; stderr: {first}" if first else "")
    if step.expect == "ok":
        return "unexpected-error", first
    if "stack backtrace" in err or "Traceback" in err:
        return "vague-error", "a backtrace: " + first
    if not named:
        return "vague-error", f"does not name {' or '.join(step.names)}: {first}"
    return "ok-error", first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--landscape", type=Path, help="the landscape binary (default: $CARGO_TARGET_DIR or target/, release)")
    ap.add_argument("--run", type=Path, help="a run recorded by `landscape demo` (DIR/mlp-digits)")
    ap.add_argument("--demo", action="store_true", help="record a demo run first (a minute or more)")
    ap.add_argument("--demo-epochs", type=int, default=5)
    ap.add_argument("--demo-grid", type=int, default=9)
    ap.add_argument("--corpus", type=Path, default=REPO / "tests" / "fuzz" / "corpus", help="the fuzz corpus (the run used without --run/--demo)")
    ap.add_argument("--work", type=Path, help="working directory (default: a temporary one, removed)")
    ap.add_argument("--keep", action="store_true", help="keep every case's directory")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a command may take")
    ap.add_argument("--hang-timeout", type=float, default=15.0, help="seconds for a suspected hang")
    ap.add_argument("--mem-gib", type=float, default=4.0, help="address-space limit of each command")
    ap.add_argument("--quick", action="store_true", help="a subset, well under a minute")
    ap.add_argument("--only", default="", help="only cases whose name contains this text")
    ap.add_argument("--seed", type=int, default=13, help="seed of the random variants")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.quick:
        # The tiny run answers in well under a second.
        args.timeout = min(args.timeout, 10.0)
        args.hang_timeout = min(args.hang_timeout, 5.0)

    binary = args.landscape
    if binary is None:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
        binary = target / "release" / "landscape"
    binary = binary.resolve()
    if not os.access(binary, os.X_OK):
        print(f"error: {binary} is not an executable landscape binary (--landscape)", file=sys.stderr)
        return 2
    tmp = None
    if args.work:
        work = args.work.resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="landscape-hostile-")
        work = Path(tmp.name)
    t_start = time.monotonic()
    try:
        pristine, shards, demo_model = prepare(binary, args, work)
        return campaign(binary, args, work, pristine, shards, demo_model, t_start)
    finally:
        if tmp is not None and not args.keep:
            tmp.cleanup()


def sh(binary: Path, *a: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([str(binary), *a], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, NO_COLOR="1"))
    if r.returncode != 0:
        raise SystemExit(f"error: preparing: landscape {' '.join(a)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r


def prepare(binary: Path, args, work: Path) -> tuple[Path, Path, bool]:
    """The pristine run (with pca/, surfaces/ and a report), shard dirs."""
    pristine = work / "pristine" / "run"
    shards = work / "pristine" / "shards"
    if pristine.exists():
        shutil.rmtree(work / "pristine")
    if args.run:
        src = args.run.resolve()
    elif args.demo:
        print(f"recording a demo run (landscape demo --epochs {args.demo_epochs} --grid {args.demo_grid}) ...", flush=True)
        sh(binary, "demo", "--out", str(work / "demo"), "--epochs", str(args.demo_epochs), "--grid", str(args.demo_grid), cwd=work, timeout=3600)
        src = work / "demo" / "mlp-digits"
    else:
        src = args.corpus / "snapshot" / "f32"
    if not (src / "manifest.json").is_file():
        raise SystemExit(f"error: {src} holds no manifest.json: not a run (--run)")
    shutil.copytree(src, pristine, ignore=shutil.ignore_patterns(".lock", ".*.tmp", "report", "export", "curvature"), symlinks=True)
    demo_model = json.loads((pristine / "manifest.json").read_text()).get("user", {}).get("model") == DEMO_MODEL
    surfaces = pristine / "surfaces"
    if not surfaces.is_dir() or not any(surfaces.iterdir()):
        surfaces.mkdir(exist_ok=True)
        shutil.copytree(args.corpus / "surface_json" / "grid2d", surfaces / "grid2d")
    if not (pristine / "pca" / "pca.json").exists():
        sh(binary, "pca", str(pristine), cwd=work)
    shards.mkdir(parents=True)
    if demo_model:
        for i in range(2):
            sh(binary, "surface", str(pristine), "--grid", "3", "--shard", f"{i}/2", "--out", str(shards / f"s{i}"), cwd=work)
        # An unfinished surface: stopped after its first segment.
        partial = work / "pristine" / "partial"
        p = subprocess.Popen([str(binary), "surface", str(pristine), "--grid", "21", "--out", str(partial)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            if any((partial / "points").glob("*.arrow")) if (partial / "points").is_dir() else False:
                break
            time.sleep(0.02)
        p.kill()
        p.wait()
        if (partial / "surface.parquet").exists():
            shutil.rmtree(partial)  # finished before it could be stopped
    else:
        for i in range(2):
            shutil.copytree(args.corpus / "shard" / "surface" / f"shard-{i}", shards / f"s{i}")
    # The names the report writes (where symlinks get planted).
    scratch = work / "pristine" / "report-run"
    shutil.copytree(pristine, scratch, symlinks=True)
    sh(binary, "report", str(scratch), cwd=work)
    names = work / "pristine" / "report-names"
    names.mkdir()
    for f in (scratch / "report").iterdir():
        (names / f.name).touch()
    shutil.rmtree(scratch)
    return pristine, shards, demo_model


def fill_outside(outside: Path) -> None:
    if outside.exists():
        shutil.rmtree(outside)
    (outside / "victim-dir").mkdir(parents=True)
    (outside / "victim.txt").write_text("keep\n")
    (outside / "victim-dir" / "keep.txt").write_text("keep\n")


def campaign(binary: Path, args, work: Path, pristine: Path, shards: Path, demo_model: bool, t_start: float) -> int:
    rng_master = random.Random(args.seed)
    outside = work / "outside"
    results: list[Result] = []
    pristine_state = tree_state(pristine)
    selected = [c for c in cases() if (c.quick or not args.quick) and args.only in c.name]
    for n, c in enumerate(selected):
        rng = random.Random(rng_master.getrandbits(64))
        cdir = work / "cases" / f"{n:03d}"
        if cdir.exists():
            shutil.rmtree(cdir)
        cdir.mkdir(parents=True)
        ctx = Ctx(case=cdir, run=cdir / "run", shards=cdir / "shards", outside=outside, rng=rng)
        if c.needs_demo and not demo_model:
            results.append(Result(c.name, c.group, "-", "skipped", None, 0.0, "needs a demo run (--run or --demo)"))
            continue
        shutil.copytree(pristine, ctx.run, symlinks=True)
        shutil.copytree(shards, ctx.shards, symlinks=True)
        if (work / "pristine" / "partial").is_dir() and "segment" in c.name:
            shutil.copytree(work / "pristine" / "partial", ctx.run / "surfaces" / "partial", symlinks=True)
        shutil.copytree(work / "pristine" / "report-names", cdir / "report-names")
        fill_outside(outside)
        try:
            c.prepare(ctx)
        except Skip as e:
            results.append(Result(c.name, c.group, "-", "skipped", None, 0.0, str(e)))
            continue
        before = tree_state(outside)
        for step in c.steps:
            subst = {"{run}": str(ctx.run), "{case}": str(cdir), "{outside}": str(outside), "{shards}": str(ctx.shards)}
            argv = []
            for a in step.args:
                if a == "{surface}":
                    a = str(ctx.surface())
                for k, v in subst.items():
                    a = a.replace(k, v)
                argv.append(a)
            t0 = time.monotonic()
            timeout = step.timeout or (args.hang_timeout if step.hang else args.timeout)
            rc, out, err, timed_out = run_step(binary, argv, step, timeout, args.mem_gib, cdir)
            secs = time.monotonic() - t0
            after = tree_state(outside)
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            html_problem = ""
            index = ctx.run / "report" / "index.html"
            if step.html and index.is_file() and not index.is_symlink() and step.html in index.read_text(errors="replace"):
                html_problem = f"unescaped {step.html!r} in report/index.html"
            cls, detail = classify(step, rc, out, err, timed_out, changed, html_problem)
            if ctx.notes:
                detail = f"[{'; '.join(ctx.notes)}] {detail}"
            label = " ".join(a.replace(str(cdir), "CASE") for a in argv)
            results.append(Result(c.name, c.group, label, cls, rc, secs, detail))
            print(f"{cls:<16} {c.name} :: {label[:90]} ({secs:.1f} s) {detail[:120]}", flush=True)
            if changed:
                fill_outside(outside)
                before = tree_state(outside)
        if not args.keep:
            shutil.rmtree(cdir, ignore_errors=True)
    if tree_state(pristine) != pristine_state:
        results.append(Result("the pristine run", "integrity", "-", "outside-write", None, 0.0, "a command changed the pristine copy"))
    print_table(results)
    counts = {k: sum(r.cls == k for r in results) for k in CLASSES}
    inputs = sum(r.cls != "skipped" for r in results)
    print(
        f"\ninputs {inputs}, panics {counts['panic']}, hangs {counts['hang']}, silent {counts['silent']}, "
        f"outside-writes {counts['outside-write']} (aborts {counts['abort/signal']}, vague errors {counts['vague-error']}, "
        f"unexpected errors {counts['unexpected-error']}, ok {counts['ok-error'] + counts['ok-warn'] + counts['ok']}, "
        f"skipped {counts['skipped']}; {time.monotonic() - t_start:.0f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=1))
    bad = counts["panic"] + counts["hang"] + counts["outside-write"] + counts["abort/signal"]
    return 1 if bad else 0


def print_table(results: list[Result]) -> None:
    print("\n| class | group | case | command | rc | s | detail |")
    print("|---|---|---|---|---|---|---|")
    order = {k: i for i, k in enumerate(CLASSES)}
    for r in sorted(results, key=lambda r: (order[r.cls], r.group, r.case)):
        detail = r.detail.replace("|", "\\|").replace("\n", " ")
        detail = CONTROL.sub(lambda m: repr(m.group(0))[1:-1], detail)
        cmd = CONTROL.sub(lambda m: repr(m.group(0))[1:-1], r.step.replace("|", "\\|"))
        name = CONTROL.sub(lambda m: repr(m.group(0))[1:-1], r.case.replace("|", "\\|"))
        print(f"| {r.cls} | {r.group} | {name} | `{cmd[:80]}` | {r.rc if r.rc is not None else '-'} | {r.seconds:.1f} | {detail[:160]} |")


if __name__ == "__main__":
    sys.exit(main())
