"""Graph packages: package.toml (the seed's format), manifest overrides, and
archives that are checked before anything is extracted."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import headrace as hr
from headrace.cli import app
from headrace.packages import (
    Limits,
    ManifestError,
    PackageError,
    build_package,
    extract_package,
    load_graph,
    parse_manifest,
)

SEED_MANIFEST = """
[package]
name = "kafka-price-signal"
version = "0.1.0"
interface = "cloacina-workflow-plugin"
interface_version = 1
extension = "cloacina"

[metadata]
graph_name = "kafka_price_signal"
language = "python"
entry = "price_signal:graph"
description = "Price signal graph driven by a Kafka topic"
reaction_mode = "when_any"
input_strategy = "sequential"

[[metadata.accumulators]]
name = "orderbook"
accumulator_type = "stream"
[metadata.accumulators.config]
broker = "KAFKA_BROKER"
topic = "price.orderbook"
group = "kafka-price-signal-group"
"""

GRAPH_SOURCE = '''
import headrace as hr

@hr.passthrough_accumulator
def orderbook(event):
    return event

graph = hr.ComputationGraph("kafka_price_signal", accumulators=[orderbook])

@graph.node
def compute(orderbook):
    return (orderbook["best_bid"] + orderbook["best_ask"]) / 2

@graph.node
def emit(compute):
    return f"mid={compute:.4f}"
'''


def write_package(folder: Path, manifest: str = SEED_MANIFEST, source: str = GRAPH_SOURCE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.toml").write_text(manifest)
    (folder / "price_signal.py").write_text(source)
    return folder


def test_the_seed_manifest_format_parses() -> None:
    m = parse_manifest(SEED_MANIFEST)
    assert (m.name, m.version, m.graph_name, m.entry) == ("kafka-price-signal", "0.1.0", "kafka_price_signal", "price_signal:graph")
    (acc,) = m.accumulators
    assert acc.accumulator_type == "stream" and acc.config["topic"] == "price.orderbook"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda s: s.replace('entry = "price_signal:graph"\n', ""), "metadata.entry: required"),
        (lambda s: s.replace("topic = ", "topik = "), "metadata.accumulators[0].config.topik: unknown key"),
        (lambda s: s.replace('accumulator_type = "stream"', 'accumulator_type = "river"'), "metadata.accumulators[0].accumulator_type: must be one of"),
        (lambda s: s + "\n[extras]\nx = 1\n", "package.toml.extras: unknown key"),
        (lambda s: s.replace('language = "python"', 'language = "rust"'), "metadata.language: this server runs Python graphs"),
        (lambda s: s.replace('reaction_mode = "when_any"', 'reaction_mode = "sometimes"'), "metadata.reaction_mode"),
        (lambda s: s.replace('entry = "price_signal:graph"', 'entry = "price_signal"'), "metadata.entry: must be 'module:attribute'"),
        (lambda s: s.replace("[package]", "[package]\nsize = 3"), "package.size: unknown key"),
    ],
)
def test_manifest_problems_name_the_field(edit, problem) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(edit(SEED_MANIFEST))
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_build_extract_load_and_run(tmp_path) -> None:
    source = write_package(tmp_path / "src")
    (source / "__pycache__").mkdir()
    (source / "__pycache__" / "junk.pyc").write_bytes(b"x")
    archive = build_package(source, tmp_path / "pkg.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["kafka-price-signal-0.1.0/package.toml", "kafka-price-signal-0.1.0/price_signal.py"]
    root = extract_package(archive, tmp_path / "out")
    graph = load_graph(root)
    # The manifest overrides the code: orderbook is a Kafka stream now.
    (orderbook,) = graph.accumulators
    assert orderbook.kind == "stream" and orderbook.config["topic"] == "price.orderbook"
    assert orderbook.config["group"] == "kafka-price-signal-group"
    assert graph.input_strategy == "sequential" and graph.criteria.kind == "when_any"
    with hr.Runtime(graph) as rt:  # inline: the stream takes pushes
        result = rt.push("orderbook", {"best_bid": 100.1, "best_ask": 100.2})
        assert result is not None and result.outputs == {"emit": "mid=100.1500"}


def test_manifest_naming_an_accumulator_the_graph_lacks(tmp_path) -> None:
    root = write_package(tmp_path / "p", SEED_MANIFEST.replace('name = "orderbook"', 'name = "order_book"'))
    with pytest.raises(ManifestError, match=r"metadata.accumulators\[0\].name: the graph has no accumulator 'order_book' \(it has: orderbook\)"):
        load_graph(root)


def test_entry_problems_are_named(tmp_path) -> None:
    with pytest.raises(ManifestError, match="metadata.graph_name: 'kafka_price_signal', but the entry's graph is named 'other'"):
        load_graph(write_package(tmp_path / "a", source=GRAPH_SOURCE.replace('"kafka_price_signal"', '"other"')))
    with pytest.raises(ManifestError, match="importing 'price_signal' failed: ZeroDivisionError"):
        load_graph(write_package(tmp_path / "b", source="1 / 0"))
    with pytest.raises(ManifestError, match="is NoneType, not a headrace.ComputationGraph"):
        load_graph(write_package(tmp_path / "c", source="graph = None"))


def tar_bytes(entries: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def manifest_entry(folder: str = "pkg") -> tuple[tarfile.TarInfo, bytes]:
    return file(f"{folder}/package.toml", SEED_MANIFEST.encode())


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([manifest_entry(), file("/etc/evil")], "absolute_path"),
        ([manifest_entry(), file("pkg/../../evil")], "path_traversal"),
        ([manifest_entry(), link("pkg/l", "/etc/passwd")], "link"),
        ([manifest_entry(), link("pkg/h", "pkg/package.toml", tarfile.LNKTYPE)], "link"),
        ([file("pkg/readme")], "no_manifest"),
        ([manifest_entry("a"), manifest_entry("b")], "no_manifest"),
        ([manifest_entry(), file("other/x.py")], "bad_path"),
    ],
)
def test_unsafe_archives_are_refused_before_extraction(tmp_path, entries, code) -> None:
    with pytest.raises(PackageError) as info:
        extract_package(tar_bytes(entries), tmp_path / "out")
    assert info.value.code == code
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_size_count_and_ratio_limits(tmp_path) -> None:
    bomb = tar_bytes([manifest_entry(), file("pkg/zeros", b"\0" * 5_000_000)])
    assert len(bomb) < 50_000
    with pytest.raises(PackageError) as info:
        extract_package(bomb, tmp_path / "a")
    assert info.value.code == "compression_ratio"
    many = tar_bytes([manifest_entry()] + [file(f"pkg/f{i}.py", bytes([i % 256]) * 64) for i in range(20)], mode="w")
    with pytest.raises(PackageError, match="more than 10 entries"):
        extract_package(many, tmp_path / "b", Limits(max_files=10))
    with pytest.raises(PackageError, match="the limit is 100"):
        extract_package(many, tmp_path / "c", Limits(max_file_bytes=100, max_ratio=1e9))
    with pytest.raises(PackageError, match="archive is"):
        extract_package(many, tmp_path / "d", Limits(max_archive_bytes=1000))
    with pytest.raises(PackageError, match="not a tar archive"):
        extract_package(b"PK\x03\x04 zip, not tar", tmp_path / "e")


def test_bzip2_and_cloacina_archives(tmp_path) -> None:
    data = tar_bytes([manifest_entry(), file("pkg/price_signal.py", GRAPH_SOURCE.encode())], mode="w:bz2")
    cloacina = tmp_path / "kafka-price-signal.cloacina"
    cloacina.write_bytes(data)
    root = extract_package(cloacina, tmp_path / "out")
    assert (root / "package.toml").is_file() and load_graph(root).name == "kafka_price_signal"


def test_cli_package(tmp_path) -> None:
    source = write_package(tmp_path / "src")
    out = tmp_path / "built.tar.gz"
    result = CliRunner().invoke(app, ["package", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and str(out) in result.output
    bad = CliRunner().invoke(app, ["package", str(tmp_path / "nowhere")])
    assert bad.exit_code == 1 and "has no package.toml" in bad.output


def test_a_package_stating_no_input_strategy_runs_sequential(tmp_path) -> None:
    manifest = SEED_MANIFEST.replace('input_strategy = "sequential"\n', "")
    assert "input_strategy" not in manifest
    assert load_graph(write_package(tmp_path, manifest=manifest)).input_strategy == "sequential"
