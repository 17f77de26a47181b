"""`prepare_data.py great_apes --download` against a local HTTP server on 127.0.0.1 that serves small real
files in UCSC's layout (``<db>/bigZips/<db>.2bit`` + ``md5sum.txt``): .2bit decoding (N blocks, soft-masking),
a transfer cut mid-file that resumes with a Range request, a re-run that continues a ``.part`` file, a
corrupt file failing its checksum with a clear message, a ``.fa.gz`` source, and `--fasta` files."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import re
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mambabench.data.dna import SpeciesDataModule
from mambabench.data.prepare.common import PrepareError, read_fasta
from mambabench.data.prepare.remote import fetch
from mambabench.data.prepare.twobit import read_2bit

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "datasets"


def _real(n: int, offset: int = 0) -> str:
    """Real soft-masked human bases (hg19 chr17 slice shipped with the tests)."""
    seq = "".join(dict(read_fasta(DATA / "hg38" / "genome.fa")).values())
    return seq[offset : offset + n]


def _ape(name: str, n: int) -> str:
    return dict(read_fasta(DATA / "great_apes" / f"{name}.fa"))["chr22_train"][:n]


def write_2bit(records: list[tuple[str, str]]) -> bytes:
    """A version-0 little-endian .2bit of ``records`` (N runs -> N blocks, lower case -> mask blocks)."""
    code = {"T": 0, "C": 1, "A": 2, "G": 3, "N": 0}

    def blocks(seq: str, pattern: str) -> list[tuple[int, int]]:
        return [(m.start(), m.end() - m.start()) for m in re.finditer(pattern, seq)]

    index_size = sum(1 + len(name.encode()) + 4 for name, _ in records)
    offset, bodies, index = 16 + index_size, [], b""
    for name, seq in records:
        n_blocks, m_blocks = blocks(seq, "[Nn]+"), blocks(seq, "[a-z]+")
        body = struct.pack("<II", len(seq), len(n_blocks))
        body += b"".join(struct.pack("<I", s) for s, _ in n_blocks) + b"".join(
            struct.pack("<I", n) for _, n in n_blocks
        )
        body += struct.pack("<I", len(m_blocks))
        body += b"".join(struct.pack("<I", s) for s, _ in m_blocks) + b"".join(
            struct.pack("<I", n) for _, n in m_blocks
        )
        body += struct.pack("<I", 0)
        upper = seq.upper() + "T" * (-len(seq) % 4)
        body += bytes(
            (code[upper[i]] << 6) | (code[upper[i + 1]] << 4) | (code[upper[i + 2]] << 2) | code[upper[i + 3]]
            for i in range(0, len(upper), 4)
        )
        index += bytes([len(name.encode())]) + name.encode() + struct.pack("<I", offset)
        bodies.append(body)
        offset += len(body)
    return struct.pack("<IIII", 0x1A412743, 0, len(records), 0) + index + b"".join(bodies)


class FileServer:
    """Serves ``files`` {url path: bytes} on 127.0.0.1 with Range support; ``cut`` {path: n} sends only the
    first n bytes of the body (full Content-Length announced) on the first request for that path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                match = re.match(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match:
                    start, status = int(match.group(1)), 206
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                payload = body[start:]
                if self.path in server.cut:
                    payload = payload[: server.cut.pop(self.path)]
                    self.close_connection = True
                self.wfile.write(payload)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def ranged(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]


@pytest.fixture
def server():
    srv = FileServer()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


HUMAN = [
    ("chr1", _real(3000)),
    ("chr3", _real(2500, 3000)),
    ("chr5", _real(2500, 6000)),
    ("chrUn_KI270302v1", _real(600, 9000)),
    ("chrM", _real(500, 10000)),
]
CHIMP = [
    ("chr1", _ape("chimpanzee", 3000)),
    ("chr2A", "N" * 150 + _ape("chimpanzee", 2000)[150:]),
    ("chr3", _ape("chimpanzee", 2500)),
    ("chr5", _ape("chimpanzee", 2600)),
]


def _publish(srv: FileServer, db: str, records: list[tuple[str, str]], corrupt: bool = False) -> bytes:
    data = write_2bit(records)
    md5 = hashlib.md5(data).hexdigest()
    srv.files[f"/goldenPath/{db}/bigZips/{db}.2bit"] = data[:-1] + bytes([data[-1] ^ 1]) if corrupt else data
    srv.files[f"/goldenPath/{db}/bigZips/md5sum.txt"] = f"{md5}  {db}.2bit\n0123  {db}.fa.gz\n".encode()
    return data


def _prepare(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("prepare_data", ROOT / "scripts" / "prepare_data.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.main(argv)


def test_2bit_decodes_bases_n_blocks_and_soft_masking(tmp_path: Path) -> None:
    records = [("chr1", "ACGTNNNNacgtnnTTGCA"), ("chr2", _real(1001, 500))]
    path = tmp_path / "x.2bit"
    path.write_bytes(write_2bit(records))
    assert list(read_2bit(path)) == records
    assert [n for n, _ in read_2bit(path, keep={"chr2"})] == ["chr2"]
    path.write_bytes(b"not a 2bit file at all")
    with pytest.raises(PrepareError, match="is not a .2bit file"):
        list(read_2bit(path))
    path.write_bytes(write_2bit(records)[:-100])
    with pytest.raises(PrepareError, match="truncated download"):
        list(read_2bit(path))


def test_download_resumes_verifies_and_converts(tmp_path: Path, server: FileServer, capsys, caplog) -> None:
    human_2bit = _publish(server, "hg38", HUMAN)
    _publish(server, "panTro6", CHIMP)
    server.cut["/goldenPath/hg38/bigZips/hg38.2bit"] = len(human_2bit) // 3  # the connection drops mid-file
    bonobo = [("1", _ape("chimpanzee", 2400)), ("3", _ape("human", 2400)), ("MT", "ACGT" * 100)]
    server.files["/ensembl/bonobo.fa.gz"] = gzip.compress(
        "".join(f">{n} x\n{s}\n" for n, s in bonobo).encode()
    )
    mirror = f"{server.url}/goldenPath"
    argv = [
        "great_apes",
        "--download",
        "--species",
        "human",
        "chimpanzee",
        "--mirror",
        mirror,
        "--url",
        f"bonobo={server.url}/ensembl/bonobo.fa.gz",
        "--data-dir",
        str(tmp_path),
    ]
    with caplog.at_level(logging.INFO, logger="mambabench"):
        assert _prepare(argv) == 0
    out = capsys.readouterr().out + caplog.text  # the preparers log their progress
    assert "transfer interrupted" in out and "verified hg38.2bit (md5)" in out
    assert server.ranged("/goldenPath/hg38/bigZips/hg38.2bit") == [None, f"bytes={len(human_2bit) // 3}-"]
    genomes = tmp_path / "great_apes_genomes"
    # assembled chromosomes only (no chrUn_*, no chrM); Ensembl names get the chr prefix; soft-masking kept
    assert list(read_fasta(genomes / "human.fa")) == HUMAN[:3]
    assert list(read_fasta(genomes / "chimpanzee.fa")) == CHIMP
    assert [n for n, _ in read_fasta(genomes / "bonobo.fa")] == ["chr1", "chr3"]
    assert (genomes / "human.fa.fai").exists() and "experiment=dna/great_apes/paper" in out
    assert "cannot be verified" in out  # the .fa.gz source has no md5sum.txt beside it: said, not hidden

    # the converted genomes feed data=species with chromosome splits
    dm = SpeciesDataModule(
        str(genomes),
        ["human", "chimpanzee", "bonobo"],
        seq_len=256,
        batch_size=6,
        num_eval_samples=6,
        split_contigs={"train": None, "valid": ["chr3"], "test": ["chr5"]},
    )
    with pytest.raises(Exception, match=r"species 'bonobo'.*no sequence 'chr5'"):
        dm.test_dataloader()
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape == (6, 256) and batch["labels"].tolist() == [0, 1, 2, 0, 1, 2]

    # a second run finds the verified files and downloads nothing
    server.requests.clear()
    assert _prepare(argv) == 0
    assert not server.ranged("/goldenPath/hg38/bigZips/hg38.2bit")


def test_rerun_continues_a_part_file(tmp_path: Path, server: FileServer) -> None:
    data = _publish(server, "gorGor6", CHIMP)
    dest = tmp_path / "gorGor6.2bit"
    Path(str(dest) + ".part").write_bytes(data[:1000])  # left by an interrupted earlier run
    fetch(f"{server.url}/goldenPath/gorGor6/bigZips/gorGor6.2bit", dest, md5=hashlib.md5(data).hexdigest())
    assert dest.read_bytes() == data and not Path(str(dest) + ".part").exists()
    assert server.ranged("/goldenPath/gorGor6/bigZips/gorGor6.2bit") == ["bytes=1000-"]


def test_corrupt_download_fails_its_checksum(tmp_path: Path, server: FileServer, capsys) -> None:
    _publish(server, "ponAbe3", HUMAN, corrupt=True)
    argv = [
        "great_apes",
        "--download",
        "--species",
        "orangutan",
        "--mirror",
        f"{server.url}/goldenPath",
        "--data-dir",
        str(tmp_path),
    ]
    assert _prepare(argv) == 1
    err = capsys.readouterr().err
    assert re.search(
        r"checksum mismatch for http://127\.0\.0\.1:\d+/goldenPath/ponAbe3/bigZips/ponAbe3\.2bit: "
        r"expected md5 [0-9a-f]{32}, got [0-9a-f]{32}\. The corrupt download was deleted; run the "
        r"command again",
        err,
    ), err
    assert list((tmp_path / "great_apes_genomes" / "_downloads").glob("ponAbe3.2bit*")) == [
        tmp_path / "great_apes_genomes" / "_downloads" / "ponAbe3.2bit.md5sum.txt"
    ]
    assert not (tmp_path / "great_apes_genomes" / "orangutan.fa").exists()
    argv[3] = "gibbon"
    assert _prepare(argv) == 1 and "no assembly known for ['gibbon']" in capsys.readouterr().err
    assert (
        _prepare(["great_apes", "--url", "gorilla=http://127.0.0.1:9/none.2bit", "--data-dir", str(tmp_path)])
        == 1
    )
    assert "Run the same command again to resume" in capsys.readouterr().err


def test_fasta_files_the_user_has(tmp_path: Path, capsys) -> None:
    twobit, fagz = tmp_path / "human.2bit", tmp_path / "gorilla.fa.gz"
    twobit.write_bytes(write_2bit(HUMAN))
    fagz.write_bytes(gzip.compress("".join(f">{n}\n{s}\n" for n, s in CHIMP).encode()))
    assert (
        _prepare(["great_apes", "--fasta", f"human={twobit}", f"gorilla={fagz}", "--data-dir", str(tmp_path)])
        == 0
    )
    genomes = tmp_path / "great_apes_genomes"
    assert [n for n, _ in read_fasta(genomes / "human.fa")] == ["chr1", "chr3", "chr5"]
    assert list(read_fasta(genomes / "gorilla.fa")) == CHIMP
    assert (
        _prepare(["great_apes", "--fasta", f"human={tmp_path / 'nope.2bit'}", "--data-dir", str(tmp_path)])
        == 1
    )
    assert "the file does not exist" in capsys.readouterr().err
