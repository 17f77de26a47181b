"""``scripts/report.py --wandb ENTITY/PROJECT`` against a local stand-in for the W&B server: the real
wandb client (``wandb.Api``, pointed at 127.0.0.1 through WANDB_BASE_URL) sends its GraphQL queries to a
small HTTP server here, which answers the four it makes (Viewer, GetDefaultEntity, Runs, Run) from an
in-memory project. Unknown queries get a GraphQL error, so a client that asks for something new fails
here loudly instead of passing by accident. ``--upload`` is checked with the client in offline mode."""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from mambabench.report import wandb_runs as wandb_runs_module
from mambabench.report import write_report

wandb = pytest.importorskip("wandb")
ROOT = Path(__file__).resolve().parents[2]

VIEWER = {
    "id": "VXNlcjox",
    "entity": "me",
    "username": "me",
    "email": "me@example.com",
    "flags": "{}",
    "teams": {"edges": []},
}
LIGHT_FIELDS = (  # what the Runs query's LightweightRunFragment asks for; config and summary come later
    "id tags name displayName sweepName state group jobType commit readOnly createdAt heartbeatAt "
    "description notes historyLineCount user projectId"
).split()


def server_run(name: str, state: str, config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """A run as the W&B server returns it: config values wrapped in {"value": ...}, JSON strings."""
    return {
        "id": f"run-{name}",
        "projectId": "1",
        "tags": ["table1"],
        "name": name,
        "displayName": name,
        "sweepName": None,
        "state": state,
        "group": "ablations/table1/paper",
        "jobType": "table1",
        "commit": None,
        "readOnly": False,
        "createdAt": "2026-01-01T00:00:00",
        "heartbeatAt": "2026-01-01T00:10:00",
        "description": None,
        "notes": None,
        "historyLineCount": 3,
        "user": {"name": "me", "username": "me"},
        "config": json.dumps({k: {"value": v, "desc": None} for k, v in config.items()}),
        "summaryMetrics": json.dumps(summary),
        "systemMetrics": "{}",
        "historyKeys": {"keys": {}},
    }


class StandIn:
    """The projects served and the operations asked for."""

    def __init__(self, projects: dict[str, list[dict[str, Any]]]) -> None:
        self.projects, self.operations = projects, []

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        match = re.search(r"(?:query|mutation)\s+(\w+)", request.get("query", ""))
        operation = match.group(1) if match else "?"
        self.operations.append(operation)
        variables = request.get("variables") or {}
        if operation in ("Viewer", "GetDefaultEntity"):
            return {"data": {"viewer": VIEWER}}
        runs = self.projects.get(f"{variables.get('entity')}/{variables.get('project')}")
        if operation == "Runs":
            if runs is None:
                return {"data": {"project": None}}
            filters = json.loads(variables.get("filters") or "{}")
            chosen = [r for r in runs if all(r.get(k) == v for k, v in filters.items())]
            edges = [{"node": {k: r[k] for k in LIGHT_FIELDS}, "cursor": r["name"]} for r in chosen]
            page = {"endCursor": edges[-1]["cursor"] if edges else None, "hasNextPage": False}
            project = {"internalId": "1", "runCount": len(edges), "readOnly": False}
            return {"data": {"project": {**project, "runs": {"edges": edges, "pageInfo": page}}}}
        if operation == "Run" and runs is not None:
            run = next((r for r in runs if r["name"] == variables.get("name")), None)
            return {"data": {"project": {"run": run}}}
        return {"errors": [{"message": f"the stand-in does not answer {operation}"}], "data": None}


@pytest.fixture
def wandb_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    finished = server_run(
        "abc123",
        "finished",
        {
            "choices": {"experiment": "ablations/table1/paper", "model": "table1/h3_s6"},
            "model": {"d_model": 64, "n_layer": 2},
            "data": {"seq_len": 4096},
            "params/total": 5000,
        },
        {"test/accuracy": 0.97, "trainer/global_step": 400000, "_runtime": 3.0},
    )
    crashed = server_run(
        "def456",
        "crashed",
        {"choices": {"experiment": "ablations/table1/paper", "model": "table1/mamba_s6"}},
        {"test/accuracy": 0.5},
    )
    stand_in = StandIn({"me/proj": [finished, crashed]})

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            body = json.dumps(stand_in.answer(request)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_MODE", "online")
    yield stand_in
    server.shutdown()
    thread.join()
    wandb.teardown()  # later tests must not inherit settings that point at this server


def test_report_reads_finished_runs_through_the_wandb_client(wandb_server: StandIn, tmp_path: Path) -> None:
    runs = wandb_runs_module.fetch_wandb_runs("me/proj", tmp_path / "cache")
    assert [r.model_name for r in runs] == ["table1/h3_s6"]  # the crashed run is filtered out
    (run,) = runs
    assert run.metric("test/accuracy") == 0.97 and run.summary["global_step"] == 400000
    assert run.summary["params"] == {"total": 5000} and run.experiment == "ablations/table1/paper"
    assert {"Runs", "Run"} <= set(wandb_server.operations)
    write_report(runs, tmp_path / "report")
    table = (tmp_path / "report" / "table1_paper.md").read_text()
    assert "| - | H3 | S6 | [97.0](../cache/abc123) / 99.7 |" in table
    assert "| Mamba | Mamba | S6 | *missing* / 99.8 |" in table


def test_report_script_names_an_unknown_project(wandb_server: StandIn, tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("report", ROOT / "scripts" / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    code = report.main(["--wandb", "me/nothing", "--out", str(tmp_path / "r")])
    assert code == 1
    assert "nothing" in capsys.readouterr().err


def test_upload_logs_tables_figures_and_an_artifact_offline(tmp_path: Path, monkeypatch) -> None:
    wandb.teardown()  # settings of an earlier wandb.setup (online, the stand-in's URL) are not reused
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    files = write_report([], tmp_path / "report")
    wandb_runs_module.upload_report("me/proj", files)
    wandb.teardown()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    media = [p.name for p in (run_dir / "files" / "media").rglob("*") if p.is_file()]
    csv_tables = [p.stem for p in files if p.suffix == ".csv"]
    for stem in csv_tables:  # every table, including those whose cells hold commas
        assert any(name.startswith(f"{stem}_") and name.endswith(".table.json") for name in media), stem
    assert any(name.startswith("table15_memory_") and name.endswith(".png") for name in media)
    assert list(run_dir.glob("run-*.wandb"))
