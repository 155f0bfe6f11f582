import io
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from digaas import latency, plots, stats

# 2026-12-04 10:00:00 UTC.
WINDOW_START = 1796378400.0
WINDOW_END = WINDOW_START + 3600.0

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTH_PIXELS = 1000
HEIGHT_PIXELS = 600

CONDITIONS = ("serial_not_lower", "zone_exists", "record_present")
NAMESERVERS = ("192.0.2.53", "2001:db8::53")


def sample_columns(count=300, seed=1):
    """Requests over the window: mostly COMPLETED, some ERROR and ACCEPTED."""
    generator = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        start_time = WINDOW_START + generator.uniform(0, 3600)
        condition = CONDITIONS[index % len(CONDITIONS)]
        nameserver = NAMESERVERS[index % len(NAMESERVERS)]
        if index % 20 == 0:
            rows.append((start_time, None, "ERROR", condition, nameserver))
        elif index % 29 == 0:
            rows.append((start_time, None, "ACCEPTED", condition, nameserver))
        else:
            rows.append((start_time, generator.lognormal(3.0, 0.5), "COMPLETED", condition,
                         nameserver))
    return stats.Columns.from_rows(rows)


def sample_histograms(buckets=60, seed=2):
    generator = np.random.default_rng(seed)
    histograms = []
    for nameserver in NAMESERVERS:
        for index in range(buckets):
            histogram = latency.Histogram(nameserver,
                                          int(WINDOW_START) + index * latency.BUCKET_SECONDS)
            for rtt_seconds in generator.lognormal(math.log(0.01), 0.5, size=50):
                histogram.add(float(rtt_seconds))
            histogram.timeouts = int(index % 10 == 0)
            histograms.append(histogram)
    return histograms


def decode_png(png):
    import matplotlib.image

    return matplotlib.image.imread(io.BytesIO(png), format="png")


def assert_valid_png(png):
    assert png.startswith(PNG_SIGNATURE)

    image = decode_png(png)
    assert image.shape[0] == HEIGHT_PIXELS
    assert image.shape[1] == WIDTH_PIXELS


@pytest.mark.parametrize("kind", plots.KINDS)
def test_render_with_data(kind):
    png = plots.render(kind, sample_columns(), sample_histograms(), WINDOW_START, WINDOW_END)

    assert_valid_png(png)


@pytest.mark.parametrize("kind", plots.KINDS)
def test_render_empty(kind):
    png = plots.render(kind, stats.Columns.empty(), [], WINDOW_START, WINDOW_END)

    assert_valid_png(png)


@pytest.mark.parametrize("kind", plots.KINDS)
def test_render_open_window(kind):
    png = plots.render(kind, sample_columns(), sample_histograms(), -math.inf, None)

    assert_valid_png(png)


def test_render_kinds_differ():
    columns = sample_columns()
    histograms = sample_histograms()

    by_condition = plots.render("propagation_by_condition", columns, histograms,
                                WINDOW_START, WINDOW_END)
    by_nameserver = plots.render("propagation_by_nameserver", columns, histograms,
                                 WINDOW_START, WINDOW_END)
    cdf = plots.render("propagation_cdf", columns, histograms, WINDOW_START, WINDOW_END)

    assert by_condition != by_nameserver
    assert by_condition != cdf
    assert not np.array_equal(decode_png(by_condition), decode_png(by_nameserver))


def test_render_is_deterministic():
    columns = sample_columns()

    first = plots.render("propagation_by_condition", columns, [], WINDOW_START, WINDOW_END)
    second = plots.render("propagation_by_condition", columns, [], WINDOW_START, WINDOW_END)

    assert decode_png(first).tobytes() == decode_png(second).tobytes()


def test_render_unknown_kind_raises():
    with pytest.raises(ValueError, match="propagation_cdf"):
        plots.render("pie", stats.Columns.empty(), [], WINDOW_START, WINDOW_END)


def test_render_only_accepted_requests():
    columns = stats.Columns.from_rows([(WINDOW_START + 1, None, "ACCEPTED", "zone_exists",
                                        "192.0.2.1")])

    for kind in ("propagation_by_condition", "propagation_cdf"):
        assert_valid_png(plots.render(kind, columns, [], WINDOW_START, WINDOW_END))


def test_render_only_errors():
    columns = stats.Columns.from_rows([(WINDOW_START + 1, None, "ERROR", "zone_exists",
                                        "192.0.2.1")])

    png = plots.render("propagation_by_nameserver", columns, [], WINDOW_START, WINDOW_END)

    assert_valid_png(png)


def test_render_single_request():
    columns = stats.Columns.from_rows([(WINDOW_START + 1, 3.0, "COMPLETED", "zone_exists",
                                        "192.0.2.1")])

    for kind in ("propagation_by_condition", "propagation_cdf"):
        assert_valid_png(plots.render(kind, columns, [], WINDOW_START, WINDOW_END))


def test_render_latency_only_timeouts():
    histogram = latency.Histogram("192.0.2.1", int(WINDOW_START), timeouts=3)

    png = plots.render("latency", stats.Columns.empty(), [histogram], WINDOW_START, WINDOW_END)

    assert_valid_png(png)


def test_render_latency_zero_rtt():
    histogram = latency.Histogram("192.0.2.1", int(WINDOW_START))
    histogram.add(0.0)

    png = plots.render("latency", stats.Columns.empty(), [histogram], WINDOW_START, WINDOW_END)

    assert_valid_png(png)


def test_render_latency_week_window():
    start = int(WINDOW_START)
    histograms = []
    for index in range(7 * 24 * 60):
        histogram = latency.Histogram("192.0.2.1", start + index * latency.BUCKET_SECONDS)
        histogram.add(0.005 + (index % 7) * 0.001)
        histograms.append(histogram)

    png = plots.render("latency", stats.Columns.empty(), histograms, start,
                       start + 7 * 86400)

    assert_valid_png(png)


def test_render_many_nameservers_without_warnings():
    rows = [(WINDOW_START + index, 5.0, "COMPLETED", "zone_exists", f"192.0.2.{index % 50}")
            for index in range(500)]
    histograms = []
    for index in range(50):
        histogram = latency.Histogram(f"192.0.2.{index}", int(WINDOW_START))
        histogram.add(0.001 * (index + 1))
        histograms.append(histogram)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kind in ("propagation_by_nameserver", "latency"):
            png = plots.render(kind, stats.Columns.from_rows(rows), histograms, WINDOW_START,
                               WINDOW_END)
            assert_valid_png(png)


def test_split_groups_keeps_largest():
    counts = {f"192.0.2.{index}": index for index in range(1, 11)}

    groups, others = plots._split_groups("nameserver", counts)

    assert len(groups) == len(plots.GROUP_COLORS) - 1
    assert groups[0] == "192.0.2.4"
    assert groups[-1] == "192.0.2.10"
    assert others == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def test_split_groups_few_values():
    groups, others = plots._split_groups("condition", {"zone_exists": 1, "serial_not_lower": 9})

    assert groups == ["serial_not_lower", "zone_exists"]
    assert others == []


def test_window_text_same_day():
    text = plots.window_text(WINDOW_START, WINDOW_END)

    assert text == "2026-12-04 10:00:00 to 11:00:00 UTC"


def test_window_text_other_day():
    text = plots.window_text(WINDOW_START, WINDOW_START + 86400)

    assert text == "2026-12-04 10:00:00 to 2026-12-05 10:00:00 UTC"


def test_window_text_open():
    assert plots.window_text(-math.inf, None) == "all time"
    assert plots.window_text(WINDOW_START, math.inf) == "from 2026-12-04 10:00:00 UTC"
    assert plots.window_text(None, WINDOW_END) == "until 2026-12-04 11:00:00 UTC"


def test_import_leaves_matplotlib_unloaded():
    code = "import sys, digaas.plots; print('matplotlib' in sys.modules)"

    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout

    assert output.strip() == "False"


def test_latency_axis_labels_only_major_ticks():
    histograms = []
    for index in range(30):
        histogram = latency.Histogram("192.0.2.1", int(WINDOW_START) + index * latency.BUCKET_SECONDS)
        histogram.add(0.0007 + (index % 5) * 0.0005)
        histograms.append(histogram)
    figure = plots._new_figure()

    plots._draw_latency(figure, histograms, (WINDOW_START, WINDOW_END))
    figure.canvas.draw()
    [axes] = [axes for axes in figure.axes if axes.get_yscale() == "log"]

    major_labels = [label.get_text() for label in axes.yaxis.get_ticklabels(which="major")]
    minor_labels = [label.get_text() for label in axes.yaxis.get_ticklabels(which="minor")]
    assert any(major_labels)
    assert not any(minor_labels)
