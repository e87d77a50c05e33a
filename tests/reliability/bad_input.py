"""Item 4: hostile declarations and catalogs against a LIVE controller on the testbed.

The parser's own hardening is tested in tests/core/test_hostile.py; here the same hostile
documents (and generated ones) go through a running replica's sources:

- the file source: every case is written over the watched declaration file of three supervised
  replicas that run on the last good declaration (what the swarm runs: nothing to do);
- the config-object source: a replica started with `--desired-config-label` gets newer labelled
  config objects, including one of 1 MB;
- catalogs: `swarm-upgrade run --catalog BAD` must refuse to start with one line, exit 1.

Each case must produce an `InvalidSpec` Warning whose message is one line naming the field (the
expected fragment of tests/core/test_hostile.py); no replica may exit; afterwards the ARM log must
show no write, the swarm's nodes must be unchanged, and a valid edit must still be picked up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from tests.reliability import invariants as inv
from tests.reliability.harness import Bed, Run, declaration
from tests.reliability.rollout import Allowances

LABEL = "swarm-upgrade.desired"
_QUOTED = r"""\[(\d+|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]"""
_SEGMENT = rf"(\.[A-Za-z0-9_-]+|{_QUOTED})"
FIELD_LINE = re.compile(rf"^(document|[A-Za-z0-9_-]+{_SEGMENT}*|{_QUOTED}{_SEGMENT}*): \S")


def hand_written() -> list[tuple[str, bytes, str]]:
    """tests/core/test_hostile.py's hand-written cases as (name, bytes, expected fragment)."""
    from tests.core.test_hostile import HOSTILE_TEXT

    out = []
    for name, data, expect in HOSTILE_TEXT:
        if isinstance(data, str):
            try:
                raw = data.encode("utf-8")
            except UnicodeEncodeError:
                # A lone surrogate cannot reach a file or a config object as text: its bytes
                # (surrogatepass) are invalid UTF-8, which the sources refuse as such.
                raw, expect = data.encode("utf-8", "surrogatepass"), "document: is not UTF-8"
        else:
            raw = data
        out.append((name, raw, expect))
    return out


def generated(count: int, seed: int) -> list[tuple[str, bytes, str]]:
    """`count` documents from test_hostile's hypothesis strategy (one defect each), as JSON."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tests.core.test_hostile import malformed_docs

    drawn: list[dict[str, Any]] = []

    @settings(max_examples=count * 3, database=None, derandomize=False, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(malformed_docs(), st.randoms(use_true_random=False))
    def collect(doc: dict[str, Any], _: random.Random) -> None:
        if len(drawn) < count:
            drawn.append(doc)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collect()
    del seed  # hypothesis draws its own examples; the count is what the campaign controls
    return [(f"generated #{i}", json.dumps(doc, allow_nan=True).encode(), "")
            for i, doc in enumerate(drawn)]


def one_line_naming_a_field(message: str, origin: str) -> bool:
    text = message.removeprefix(f"{origin}: ")
    return "\n" not in message and bool(FIELD_LINE.match(text))


async def feed_file(run: Run, cases: list[tuple[str, bytes, str]],
                    allow: Allowances) -> list[dict[str, Any]]:
    assert run.desired is not None
    origin = str(run.desired)
    rows = []
    for name, data, expect in cases:
        at = time.time()
        tmp = run.desired.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(run.desired)
        row = await _refusal(run, origin, at, expect, name)
        rows.append(row)
        if not row["ok"]:
            allow.violations.append(f"file source, {name}: {row['why']}")
    return rows


async def _refusal(run: Run, origin: str, at: float, expect: str, name: str,
                   wait_s: float = 20.0) -> dict[str, Any]:
    """Wait until every running replica answered the write at `at`; judge all the answers."""
    assert run.replicas is not None
    deadline = time.monotonic() + wait_s
    answers: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        labels = {f"{h}-g{r.generation}" for h, r in run.replicas.running.items()}
        answers = {}
        for e in run.events():
            if e.get("reason") in ("InvalidSpec", "DeclarationLoaded") and e.get("time") \
                    and inv.epoch(e["time"]) >= at - 0.001 \
                    and str(e.get("object")) == f"declaration/{origin}":
                answers.setdefault(str(e.get("replica")), e)
        if labels and labels <= set(answers):
            break
        await asyncio.sleep(0.1)
    if not answers:
        return {"case": name, "ok": False, "why": f"no InvalidSpec event within {wait_s:g}s"}
    loaded = [e for e in answers.values() if e.get("reason") == "DeclarationLoaded"]
    if loaded:
        return {"case": name, "ok": False, "why": f"accepted: {loaded[0]['message']}"}
    messages = [str(e["message"]) for e in answers.values()]
    good = all(one_line_naming_a_field(m, origin) for m in messages)
    named = not expect or all(expect in m for m in messages)
    why = "" if good and named else (
        f"not one line naming a field: {messages[0][:200]!r}" if not good
        else f"expected {expect!r} in {messages[0][:200]!r}")
    return {"case": name, "ok": good and named, "why": why, "message": messages[0][:300],
            "replicas": len(messages)}


class ConfigReplica:
    """One extra replica reading the declaration from labelled config objects."""

    def __init__(self, run: Run, host: str) -> None:
        self.run = run
        self.host = host
        self.log = run.dir / "config-source.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in self.run.bed.handle.env}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["swarm-upgrade", "run", "--env-file", str(self.run.bed.handle.env_file),
                 "--docker-host", self.run.bed.managers[self.host], "--desired-config-label",
                 f"{LABEL}=true", "--replica-id", "config-source", "--metrics-port", "-1",
                 "--resync", "5", "--lease-duration", "3", "--swarm-timeout", "5"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        alive = self.proc.poll() is None
        if alive:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return 0 if alive else self.proc.returncode


async def create_config(host: str, name: str, data: bytes) -> str:
    from testbed.probe import docker_post

    body = {"Name": name, "Labels": {LABEL: "true"}, "Data": base64.b64encode(data).decode()}
    created = await docker_post(host, "/configs/create", body)
    return str(created["ID"])


async def feed_configs(run: Run, replica: ConfigReplica, cases: list[tuple[str, bytes, str]],
                       allow: Allowances) -> list[dict[str, Any]]:
    from testbed.probe import docker_delete

    host = run.bed.any_manager()
    rows = []
    made: list[str] = []
    try:
        for index, (name, data, expect) in enumerate(cases):
            config = f"hostile-{index}-{int(time.time() * 1000)}"
            at = time.time()
            try:
                made.append(await create_config(host, config, data))
            except Exception as err:
                rows.append({"case": name, "ok": True, "why": "",
                             "message": f"refused by swarm: {str(err)[:200]}"})
                continue
            origin = f"config/{config}"
            row = await _refusal_in(replica, origin, at, expect, name)
            rows.append(row)
            if not row["ok"]:
                allow.violations.append(f"config source, {name}: {row['why']}")
    finally:
        for config_id in made:
            try:
                await docker_delete(host, f"/configs/{config_id}")
            except Exception:
                pass
    return rows


async def _refusal_in(replica: ConfigReplica, origin: str, at: float, expect: str,
                      name: str, wait_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        events = replica.events()
        hits = [e for e in events if e.get("reason") == "InvalidSpec"
                and str(e.get("object")) == f"declaration/{origin}"]
        if [e for e in events if e.get("reason") == "DeclarationLoaded"
                and origin in str(e.get("object"))]:
            return {"case": name, "ok": False, "why": "accepted"}
        if hits:
            messages = [str(e["message"]) for e in hits]
            good = all(one_line_naming_a_field(m, origin) for m in messages)
            named = not expect or any(expect in m for m in messages)
            return {"case": name, "ok": good and named,
                    "why": "" if good and named else f"message {messages[0][:200]!r}",
                    "message": messages[0][:300]}
        await asyncio.sleep(0.2)
    return {"case": name, "ok": False, "why": f"no InvalidSpec event within {wait_s:g}s"}


def hostile_catalogs(good: str) -> list[tuple[str, bytes, str]]:
    """(name, catalog bytes, the field its one-line refusal must name)."""
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    return [
        ("empty catalog", b"", ""),
        ("catalog is a list", b"- a\n- b\n", ""),
        ("channels wrong type", b"channels: 42\n", "channels"),
        ("channel not a list", b"channels: {stable: {version: x}}\n", "channels.stable"),
        ("release without image", b"channels:\n  stable:\n  - version: 17.06.0-ce-azure1\n",
         "channels.stable[0]"),
        ("version with shell metacharacters", good.replace(
            "version: 17.03.0-ce-azure1", "version: '17.03.0; rm -rf /'").encode(), "version"),
        ("image version wrong type", good.replace("version: 17.03.0\n", "version: [1]\n",
                                                  1).encode(), "version"),
        ("alias bomb", (bomb + good).encode(), "document"),
        ("duplicate keys", (good + "channels: {}\n").encode(), "document"),
        ("non-UTF-8", good.encode() + b"\n# \xff\xfe\n", "document"),
        ("catalog over 1 MiB", (good + "#" + "x" * 1_100_000 + "\n").encode(), "document"),
        ("python tag", (good + "x: !!python/object/apply:os.system ['id']\n").encode(),
         "document"),
        ("deep nesting", ("channels: " + "[" * 3000 + "]" * 3000 + "\n").encode(), "document"),
        ("unknown upgradeFrom", good.replace(
            "  - version: 17.03.1-ce-azure1\n",
            "  - version: 17.03.1-ce-azure1\n    upgradeFrom: [9.9.9-nope]\n", 1).encode(), ""),
        ("two documents", (good + "---\n" + good).encode(), "document"),
    ]


def check_catalogs(run: Run, allow: Allowances, count: int | None = None) -> list[dict[str, Any]]:
    from importlib import resources

    good = resources.files("controller").joinpath("catalog.yaml").read_text()
    rows = []
    assert run.desired is not None
    for index, (name, data, field) in enumerate(hostile_catalogs(good)[:count]):
        path = run.dir / f"catalog-{index}.yaml"
        path.write_bytes(data)
        env = {k: v for k, v in os.environ.items() if k not in run.bed.handle.env}
        try:
            proc = subprocess.run(
                ["swarm-upgrade", "run", "--env-file", str(run.bed.handle.env_file), "--catalog",
                 str(path), "--desired-file", str(run.desired), "--metrics-port", "-1",
                 "--docker-host", run.bed.any_manager()],
                env=env, capture_output=True, timeout=120, check=False)
        except subprocess.TimeoutExpired:
            rows.append({"case": name, "ok": False, "why": "still running after 120 s"})
            allow.violations.append(f"catalog, {name}: accepted (still running after 120 s)")
            continue
        lines = [line for line in (proc.stdout + proc.stderr).decode(errors="replace")
                 .splitlines() if line.strip()]
        text = lines[0] if lines else ""
        try:
            message = str(json.loads(text).get("message", text))
        except ValueError:
            message = text
        # Exit 1: bad input (2 is for usage errors), one line naming the field.
        ok = proc.returncode == 1 and len(lines) == 1 and (not field or field in message)
        row = {"case": name, "ok": ok, "exit": proc.returncode, "message": message[:300]}
        if not ok:
            row["why"] = f"exit {proc.returncode}, {len(lines)} line(s): {message[:200]!r}"
            allow.violations.append(f"catalog, {name}: {row['why']}")
        rows.append(row)
    return rows


async def scenario(run: Run, allow: Allowances, *, cases: int | None, generated_count: int,
                   seed: int, config_cases: int, catalogs: int | None = None) -> None:
    """Everything above against a resting testbed (no rollout)."""
    await run.wait_reason("UpToDate", 180)
    begin = time.time()
    nodes = await run.bed.nodes()
    assert run.replicas is not None
    generations = {h: r.generation for h, r in run.replicas.running.items()}
    file_cases = hand_written()
    rng = random.Random(seed)
    if cases is not None and cases < len(file_cases):
        file_cases = rng.sample(file_cases, cases)
    file_cases += generated(generated_count, seed)
    rows = await feed_file(run, file_cases, allow)
    config_rows: list[dict[str, Any]] = []
    if config_cases:
        replica = ConfigReplica(run, next(iter(run.bed.managers)))
        good = declaration(run.bed.version).encode()
        host = run.bed.any_manager()
        first = await create_config(host, f"good-{int(time.time())}", good)
        replica.start()
        try:
            deadline = time.monotonic() + 60
            while not any(e.get("reason") == "DeclarationLoaded" for e in replica.events()):
                assert time.monotonic() < deadline, "config source: the good config never loaded"
                await asyncio.sleep(0.3)
            chosen = rng.sample(hand_written(), min(config_cases, len(hand_written())))
            big = ("1 MB config object", (declaration(run.bed.version) + "#" + "x" * 1_000_000
                                          + "\n").encode(), "document")
            config_rows = await feed_configs(run, replica, [big, *chosen], allow)
        finally:
            code = replica.stop()
            from testbed.probe import docker_delete
            await docker_delete(host, f"/configs/{first}")
        if code != 0:
            allow.violations.append(f"config source: the replica exited ({code})")
    catalog_rows = await asyncio.to_thread(check_catalogs, run, allow, catalogs)
    # The controller stayed up on its last good declaration and touched nothing.
    for host, generation in generations.items():
        replica_now = run.replicas.running.get(host)
        if replica_now is None or replica_now.generation != generation \
                or replica_now.proc.poll() is not None:
            allow.violations.append(f"the replica on {host} did not stay up")
    writes = inv.accepted_writes(run.arm_log(), begin)
    allow.violations += [f"touched by bad input: {w}" for w in writes]
    after = await run.bed.nodes()
    if [(n["id"], n["role"], n["availability"]) for n in nodes] != \
            [(n["id"], n["role"], n["availability"]) for n in after]:
        allow.violations.append("the swarm's nodes changed under bad input")
    # Still alive and listening: a valid edit (paused) is picked up.
    at = time.time()
    run.declare(declaration(run.bed.version, extra="  paused: true\n"))
    loaded = await run.wait_reason("DeclarationLoaded", 30, after=at)
    allow.details.update(
        fileCases=rows, configCases=config_rows, catalogCases=catalog_rows,
        validEditAfterwards=loaded["message"][:200])
    allow.measured.update(
        hostileDeclarations=len(rows) + len(config_rows), hostileCatalogs=len(catalog_rows),
        refusedCorrectly=sum(1 for r in rows + config_rows + catalog_rows if r["ok"]))


async def run_input(bed: Bed, directory: Path, index: int, *, cases: int | None,
                    generated_count: int, seed: int, config_cases: int,
                    catalogs: int | None = None) -> dict[str, Any]:
    started = time.monotonic()
    run = Run(bed, directory)
    allow = Allowances()
    outcome = "error"
    try:
        await run.start()
        await scenario(run, allow, cases=cases, generated_count=generated_count, seed=seed,
                       config_cases=config_cases, catalogs=catalogs)
        outcome = "stayed up"
    except Exception as err:
        allow.violations.append(f"harness: {type(err).__name__}: {err}")
    finally:
        await run.finish()
    return {"scenario": "bad-input", "group": "input", "run": index, "outcome": outcome,
            "expected": "stayed up", "ok": outcome == "stayed up" and not allow.violations,
            "violations": allow.violations, "durationS": round(time.monotonic() - started, 1),
            "measured": allow.measured, "details": allow.details}


async def group(c: Any) -> None:
    bed: Bed = c.bed_for_run()
    c.add(await run_input(bed, c.rundir("bad-input", 0), 0, cases=None, generated_count=10,
                          seed=c.seed, config_cases=12))


if __name__ == "__main__":  # pragma: no cover - a quick look at the cases
    print(len(hand_written()), file=sys.stderr)
