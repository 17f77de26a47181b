"""Figure 8 and Table 15 in the report, from small handwritten benchmark CSVs with the columns that
scripts/bench_scan.py, bench_generate.csv and bench_memory.csv have: measured cells, out-of-memory
cells, missing cells, the paper's Table 15 beside ours, and report.py finding the CSVs."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

from mambabench.report import write_report
from mambabench.report.bench_csv import find_bench_csvs

ROOT = Path(__file__).resolve().parents[2]

SCAN_CSV = """section,impl,dtype,batch,seqlen,ms,gbs,device
env,copy,,,,,2900.0,NVIDIA H100 80GB HBM3
fig8,ours fwd,,1,512,0.021,,
fig8,ours fwd,,1,1024,0.035,,
fig8,causal SDPA fwd,,1,512,0.015,,
fig8,causal SDPA fwd,,1,1024,OOM,,
train,ours fwd,,8,2048,1.5,,
"""
GENERATE_CSV = """model,impl,batch,prompt_len,gen_len,seconds,tokens_per_s,peak_mem_gb,device,cuda_graph
mamba-1.4b,ours,1,2048,128,2.0,64.0,3.1,NVIDIA H100 80GB HBM3,true
mamba-1.4b,ours,64,2048,128,4.0,2048.0,20.5,NVIDIA H100 80GB HBM3,true
transformerpp-1.3b,ours,64,2048,128,OOM,,,NVIDIA H100 80GB HBM3,false
"""
MEMORY_CSV = """model,batch,seqlen,peak_mem_gb,paper_gb,device
mamba_130m,1,2048,4.2,4.8,NVIDIA H100 80GB HBM3
mamba_130m,32,2048,OOM,38.2,NVIDIA H100 80GB HBM3
transformerpp_125m,1,2048,3.9,4.6,NVIDIA H100 80GB HBM3
"""


def write_csvs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.csv").write_text(SCAN_CSV)
    (folder / "bench_generate.csv").write_text(GENERATE_CSV)
    (folder / "bench_memory.csv").write_text(MEMORY_CSV)
    (folder / "other.csv").write_text("a,b\n1,2\n")
    return folder


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_figure8_and_table15_put_measurements_oom_and_missing_cells_in_place(tmp_path: Path) -> None:
    bench = find_bench_csvs([write_csvs(tmp_path / "bench")])
    assert [p.name for p in bench["scan"]] == ["results.csv"]
    assert [p.name for p in bench["generate"]] == ["bench_generate.csv"]
    out = tmp_path / "report"
    write_report([], out, bench=bench)

    scan = (out / "figure8_scan.md").read_text()
    assert "NVIDIA H100 80GB HBM3" in scan
    ours = next(line for line in scan.splitlines() if line.startswith("| ours fwd"))
    assert "[0.021](../bench) / -" in ours and "[0.035](../bench) / -" in ours and "*missing* / -" in ours
    sdpa = next(line for line in scan.splitlines() if line.startswith("| causal SDPA fwd"))
    assert "[oom](../bench) / -" in sdpa
    assert "1.5" not in scan  # rows of other sections are not Figure 8's

    gen = list(csv.DictReader(open(out / "figure8_generation.csv")))
    mamba = next(r for r in gen if r["Model (implementation)"] == "mamba-1.4b (ours)")
    assert (
        mamba["batch 1 ours"] == "64" and mamba["batch 64 ours"] == "2048" and mamba["batch 128 ours"] == ""
    )
    transformer = next(r for r in gen if r["Model (implementation)"].startswith("transformerpp"))
    assert transformer["batch 64 ours"] == "oom"

    memory = (out / "table15_memory.md").read_text()
    batch1 = next(line for line in memory.splitlines() if line.startswith("| 2048 | 1 |"))
    assert "[3.9](../bench) / 4.6" in batch1 and "[4.2](../bench) / 4.8" in batch1
    batch32 = next(line for line in memory.splitlines() if line.startswith("| 2048 | 32 |"))
    assert "*missing* / 34.5" in batch32 and "[oom](../bench) / 38.2" in batch32
    for name in ("figure8_scan", "figure8_generation", "table15_memory"):
        assert (out / f"{name}.png").exists() and (out / f"{name}.svg").exists()
    index = (out / "README.md").read_text()
    assert "Figure 8 and Table 15" in index and "[table15_memory](table15_memory.md)" in index


def test_without_benchmark_csvs_table15_is_written_with_every_cell_missing(tmp_path: Path) -> None:
    write_report([], tmp_path / "report")
    memory = (tmp_path / "report" / "table15_memory.md").read_text()
    assert "*missing* / 4.6" in memory and "*missing* / 38.2" in memory and "[" not in memory
    assert not (tmp_path / "report" / "figure8_scan.md").exists()


def test_report_script_finds_benchmark_csvs_in_run_folders_and_bench_folders(tmp_path: Path) -> None:
    report = load_script("report")
    write_csvs(tmp_path / "outputs" / "bench")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "bench_memory.csv").write_text(
        "model,batch,seqlen,peak_mem_gb,paper_gb,device\nmamba_130m,2,2048,5.5,5.8,H100\n"
    )
    code = report.main(
        [str(tmp_path / "outputs"), "--bench", str(tmp_path / "elsewhere"), "--out", str(tmp_path / "r")]
    )
    assert code == 0
    memory = (tmp_path / "r" / "table15_memory.md").read_text()
    assert "[4.2](../outputs/bench) / 4.8" in memory and "[5.5](../elsewhere) / 5.8" in memory
    assert (tmp_path / "r" / "figure8_scan.png").exists()
    assert report.main([str(tmp_path / "outputs"), "--bench", str(tmp_path / "nowhere")]) == 1
