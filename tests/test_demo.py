"""Tests of `digaas demo`: its planning and statistics, its options, and whole runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from digaas import cli
from digaas import demo
from digaas.localbind import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

# A run of 6 zones plans 18 changes over about 5 seconds, because the gap of
# frequency + 1 s between a zone's changes adds pauses. Startup and shutdown
# take a few seconds more.
SMALL_RUN_OPTIONS = ["--zones", "6", "--rate", "20", "--frequency", "0.2", "--timeout", "10"]
SMALL_RUN_TIMEOUT_SECONDS = 120


def run_demo(*options):
    environ = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "digaas.cli", "demo", *options],
        cwd=REPO_ROOT, env=environ, capture_output=True, text=True,
        timeout=SMALL_RUN_TIMEOUT_SECONDS)


def parse_table(stdout):
    """Return {change type: {column: value}} from the result table in the demo's stdout."""
    lines = stdout.splitlines()
    header_index = next(index for index, line in enumerate(lines) if line.startswith("change "))
    columns = lines[header_index].split()

    rows = {}
    for line in lines[header_index + 1:]:
        fields = line.split()
        if len(fields) != len(columns):
            break
        rows[fields[0]] = dict(zip(columns, fields))
    return rows


def test_percentile_nearest_rank():
    values = [35, 20, 15, 50, 40]

    assert demo.nearest_rank_percentile(values, 0) == 15
    assert demo.nearest_rank_percentile(values, 5) == 15
    assert demo.nearest_rank_percentile(values, 30) == 20
    assert demo.nearest_rank_percentile(values, 40) == 20
    assert demo.nearest_rank_percentile(values, 50) == 35
    assert demo.nearest_rank_percentile(values, 90) == 50
    assert demo.nearest_rank_percentile(values, 100) == 50


def test_percentile_single_and_even_counts():
    assert demo.nearest_rank_percentile([0.25], 50) == 0.25
    assert demo.nearest_rank_percentile([0.25], 90) == 0.25
    assert demo.nearest_rank_percentile([1, 2, 3, 4], 50) == 2
    assert demo.nearest_rank_percentile(list(range(1, 11)), 90) == 9


@pytest.mark.parametrize("values, percent", [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_rejects_bad_input(values, percent):
    with pytest.raises(ValueError):
        demo.nearest_rank_percentile(values, percent)


@pytest.mark.parametrize("zone_count", [1, 2, 6, 200])
def test_plan_orders_each_zone(zone_count):
    gap_seconds = 1.5
    changes = demo.plan_changes(zone_count, "abc123", 20.0, gap_seconds)

    assert len(changes) == 3 * zone_count
    assert [change.index for change in changes] == list(range(len(changes)))

    by_zone = {}
    for change in changes:
        by_zone.setdefault(change.zone_name, []).append(change)
    assert len(by_zone) == zone_count

    for zone_changes in by_zone.values():
        assert [change.change_type for change in zone_changes] == ["create", "update", "delete"]
        offsets = [change.planned_offset_seconds for change in zone_changes]
        assert offsets[1] - offsets[0] >= gap_seconds - 1e-9
        assert offsets[2] - offsets[1] >= gap_seconds - 1e-9


@pytest.mark.parametrize("zone_count", [6, 200])
def test_plan_keeps_rate_and_overlaps(zone_count):
    rate_per_second = 20.0
    changes = demo.plan_changes(zone_count, "abc123", rate_per_second, 1.5)
    offsets = [change.planned_offset_seconds for change in changes]

    steps = [later - earlier for earlier, later in zip(offsets, offsets[1:])]
    assert min(steps) >= 1 / rate_per_second - 1e-9

    # Some zone is deleted before the last zone is created.
    first_delete = min(change.index for change in changes if change.change_type == "delete")
    last_create = max(change.index for change in changes if change.change_type == "create")
    assert first_delete < last_create


def test_plan_has_no_pauses_at_defaults():
    rate_per_second = demo.DEFAULT_RATE_PER_SECOND
    gap_seconds = demo.zone_gap_seconds(demo.DEFAULT_FREQUENCY_SECONDS)
    changes = demo.plan_changes(demo.DEFAULT_ZONES, "abc123", rate_per_second, gap_seconds)

    expected_seconds = (len(changes) - 1) / rate_per_second
    assert changes[-1].planned_offset_seconds == pytest.approx(expected_seconds)


@pytest.mark.parametrize("option, value", [
    ("--zones", "0"),
    ("--zones", "-3"),
    ("--zones", "many"),
    ("--rate", "0"),
    ("--rate", "nan"),
    ("--rate", "inf"),
    ("--frequency", "-0.5"),
    ("--timeout", "0"),
    ("--url", "127.0.0.1:9090"),
])
def test_options_reject_invalid_value(capsys, option, value):
    with pytest.raises(SystemExit) as raised:
        cli.build_parser().parse_args(["demo", option, value])

    assert raised.value.code == 2
    message = capsys.readouterr().err
    assert f"argument {option}" in message
    assert value in message


def test_zones_zero_exits_2():
    completed = run_demo("--zones", "0")

    assert completed.returncode == 2
    assert "argument --zones: invalid value 0" in completed.stderr
    assert completed.stdout == ""


def test_url_without_digaas_fails():
    url = f"http://127.0.0.1:{free_port()}"

    completed = run_demo("--zones", "1", "--url", url)

    assert completed.returncode == 1
    assert f"no digaas responded at {url}" in completed.stderr
    assert "stopping BIND9" in completed.stderr


@pytest.mark.parametrize("order_options", [[], ["--post-first"]], ids=["change-first", "post-first"])
def test_demo_run_completes_all(order_options):
    completed = run_demo(*SMALL_RUN_OPTIONS, *order_options)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "schedule: kept up" in completed.stdout
    assert "by nearest rank" in completed.stdout
    assert "run took" in completed.stdout

    rows = parse_table(completed.stdout)
    assert sorted(rows) == ["all", "create", "delete", "update"]

    for change_type in ("create", "update", "delete"):
        row = rows[change_type]
        assert row["count"] == "6", row
        assert row["completed"] == "6", row
        assert row["errors"] == "0", row

        minimum = float(row["min"])
        median = float(row["median"])
        p90 = float(row["p90"])
        maximum = float(row["max"])
        assert minimum >= 0, row
        assert median >= minimum, row
        assert p90 >= median, row
        assert maximum >= p90, row

    assert rows["all"]["count"] == "18"
    assert rows["all"]["completed"] == "18"
    assert rows["all"]["errors"] == "0"

    # A request posted before its change misses on its first query, so its
    # duration contains most of one polling interval of 0.2 s.
    if "--post-first" in order_options:
        assert float(rows["all"]["min"]) >= 0.1, rows["all"]

