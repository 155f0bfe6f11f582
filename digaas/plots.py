"""PNG plots of propagation times and DNS query latencies over a time window.

Each plot is a 1000 x 600 pixel PNG, rendered with matplotlib's Agg canvas
on a Figure of its own, so renders share no pyplot state. matplotlib is
imported inside the functions, so importing this module does not load it.
"""

import collections
import datetime
import io
import ipaddress
import logging
import math
import time

import numpy as np

from digaas import latency, model, stats

LOG = logging.getLogger(__name__)

KINDS = ("propagation_by_condition", "propagation_by_nameserver", "propagation_cdf",
         "latency")

FIGURE_SIZE_INCHES = (10, 6)
DPI = 100

NO_DATA_TEXT = "no data in this window"

# The tab10 colors without red, which marks errors, and gray, which marks
# "other". With more groups than colors, the largest groups but one get a
# color each and the rest share one gray "other" group.
GROUP_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown",
                "tab:pink", "tab:olive", "tab:cyan")
ERROR_COLOR = "tab:red"
OTHER_COLOR = "tab:gray"

# ERROR requests have no duration and timeouts no round-trip time, so x
# markers in a narrow panel above the main axes show when they happened. The panel gets
# this share of the height, more when it has more than two rows of markers.
STRIP_HEIGHT_RATIO = 1
MAIN_HEIGHT_RATIO = 9
STRIP_ROWS_PER_HEIGHT_RATIO = 2

# Space above the highest value on a linear y-axis.
Y_HEADROOM_FACTOR = 1.05

# Size of the symbols in the legend, whatever their size in the plot.
LEGEND_MARKER_SIZE_POINTS = 8

# The propagation scatter draws each group's requests in this many rounds
# of random subsets, so that no group hides another in a dense cloud. The
# last points drawn at any place then come from every group in proportion.
SCATTER_ROUNDS = 20

# A fixed seed keeps the drawing order, and so the PNG, the same for the
# same data.
SCATTER_SEED = 0

# Above this many completed requests per condition, the CDF line passes
# through this many evenly spaced ranks instead of every request. Its steps
# then stay within about 1 / MAX_CDF_POINTS of the full curve in y, which
# is under a pixel on an axes less than 600 pixels high.
MAX_CDF_POINTS = 2000

# The latency plot merges the histograms of each nameserver into the
# shortest of these intervals that gives at most MAX_LATENCY_INTERVALS
# points per line. Each interval is a whole number of buckets.
LATENCY_INTERVALS_SECONDS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                             43200, 86400)
MAX_LATENCY_INTERVALS = 240

# Up to this many intervals, the latency lines also mark each interval with
# a dot, so that an interval between two empty ones stays visible.
MAX_MARKED_INTERVALS = 120

# Mantissas of the major ticks on the log-scale latency axis.
TICK_MANTISSAS = (1.0, 2.0, 5.0)


def render(kind, columns, histograms, window_start, window_end):
    """Render one plot kind of a window as PNG bytes.

    columns is a stats.Columns of the requests in the window, histograms an
    iterable of latency.Histogram, and the window bounds are unix seconds
    (infinite or None when open). A window without data gives a PNG with
    the text NO_DATA_TEXT. Raises ValueError for a kind not in KINDS.
    """
    if kind not in KINDS:
        raise ValueError(f"invalid plot kind {kind!r}: must be one of {', '.join(KINDS)}")

    started = time.perf_counter()
    figure = _new_figure()
    window = (window_start, window_end)
    histograms = list(histograms)

    if kind == "propagation_by_condition":
        _draw_propagation(figure, columns, "condition", window)
    elif kind == "propagation_by_nameserver":
        _draw_propagation(figure, columns, "nameserver", window)
    elif kind == "propagation_cdf":
        _draw_cdf(figure, columns, window)
    else:
        _draw_latency(figure, histograms, window)

    png = _png_bytes(figure)
    LOG.debug("rendered %s of %d requests and %d histograms in %.2f s", kind, len(columns),
              len(histograms), time.perf_counter() - started)
    return png


def _new_figure():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png_bytes(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _is_open(unix_seconds):
    return unix_seconds is None or not math.isfinite(unix_seconds)


def _is_closed_window(window):
    window_start, window_end = window
    return not _is_open(window_start) and not _is_open(window_end) and window_end > window_start


# Unix seconds of 0001-01-01 and 9999-12-31 23:59:59 UTC, the range that
# datetime and matplotlib's date axis can show.
FIRST_SHOWN_SECONDS = -62135596800
LAST_SHOWN_SECONDS = 253402300799


def _utc_text(unix_seconds, date_format):
    try:
        moment = datetime.datetime.fromtimestamp(unix_seconds, tz=datetime.timezone.utc)
    except (ValueError, OverflowError, OSError):
        return f"{unix_seconds:g} s"
    return moment.strftime(date_format)


def window_text(window_start, window_end):
    """Return a window as UTC text, such as "2026-12-04 10:00:00 to 11:00:00 UTC".

    The end shows its date only when it falls on another day than the
    start. With an open bound, the text reads "from ... UTC", "until ...
    UTC" or "all time".
    """
    full_format = "%Y-%m-%d %H:%M:%S"
    if _is_open(window_start) and _is_open(window_end):
        return "all time"
    if _is_open(window_end):
        return f"from {_utc_text(window_start, full_format)} UTC"
    if _is_open(window_start):
        return f"until {_utc_text(window_end, full_format)} UTC"

    end_format = full_format
    if _utc_text(window_start, "%Y-%m-%d") == _utc_text(window_end, "%Y-%m-%d"):
        end_format = "%H:%M:%S"
    return f"{_utc_text(window_start, full_format)} to {_utc_text(window_end, end_format)} UTC"


def _date_numbers(unix_seconds):
    """Convert unix seconds to matplotlib date numbers (days since its epoch)."""
    from matplotlib import dates

    epoch_days = dates.date2num(np.datetime64(0, "s"))
    return epoch_days + np.asarray(unix_seconds, dtype=np.float64) / 86400.0


def _set_time_axis(axes, window, label):
    """Label the x-axis with UTC times and widen it to a closed window."""
    from matplotlib import dates

    utc = datetime.timezone.utc
    locator = dates.AutoDateLocator(tz=utc)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator, tz=utc))
    axes.set_xlabel(label)

    if _is_closed_window(window):
        start, end = (min(max(edge, FIRST_SHOWN_SECONDS), LAST_SHOWN_SECONDS)
                      for edge in window)
        axes.set_xlim(_date_numbers(start), _date_numbers(end))


def _draw_no_data(figure, title, details=""):
    # The figure title, not the axes title, as in the plots with data.
    figure.suptitle(title)
    axes = figure.add_subplot()
    axes.set_axis_off()

    text = NO_DATA_TEXT
    if details:
        text += "\n" + details
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center",
              fontsize=16, color="dimgray")


def _group_values(field, values):
    """Return distinct values of a column in legend order.

    Conditions come in the order of model.CONDITIONS, so that each keeps its
    color across plots. Other values, and unknown conditions after them,
    come sorted, IP addresses by number (IPv4 first).
    """
    present = set(values)
    ordered = []
    if field == "condition":
        ordered = [condition for condition in model.CONDITIONS if condition in present]
    ordered += sorted(present - set(ordered), key=_sort_key)
    return ordered


def _sort_key(value):
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return (1, 0, 0, str(value))
    return (0, address.version, int(address), "")


def _split_groups(field, counts):
    """Return the groups that get a color of their own, and the rest.

    counts maps each value of a column to its number of requests or
    queries. With at most len(GROUP_COLORS) values, every value is a group
    of its own. Otherwise the len(GROUP_COLORS) - 1 largest values are, in
    legend order, and the rest form the "other" group.
    """
    groups = _group_values(field, counts)
    if len(groups) <= len(GROUP_COLORS):
        return groups, []

    largest = set(sorted(groups, key=lambda group: (-counts[group], group))
                  [:len(GROUP_COLORS) - 1])
    named = [group for group in groups if group in largest]
    others = [group for group in groups if group not in largest]
    return named, others


def _other_label(field, others):
    return f"{len(others)} other {field}s"


def _group_colors(field, groups):
    """Return a color per group, with no color used twice for up to len(GROUP_COLORS) groups."""
    if field == "condition":
        # A color per condition of model.CONDITIONS, whichever are present.
        colors = {condition: GROUP_COLORS[index]
                  for index, condition in enumerate(model.CONDITIONS)}
        unknown = [group for group in groups if group not in colors]
        offset = len(model.CONDITIONS)
        for index, group in enumerate(unknown):
            colors[group] = GROUP_COLORS[(offset + index) % len(GROUP_COLORS)]
        return colors

    return {group: GROUP_COLORS[index % len(GROUP_COLORS)] for index, group in enumerate(groups)}


def _is_in(values, members):
    """Return a boolean array that is true where an element of an object array is in members."""
    members = set(members)
    return np.fromiter((value in members for value in values), dtype=bool, count=len(values))


def _marker_size_points(point_count):
    """Return a marker size that keeps single points visible and dense clouds readable."""
    if point_count <= 2_000:
        return 5.0
    if point_count <= 50_000:
        return 3.0
    return 1.5


def _strip_and_main_axes(figure, strip_label, strip_rows):
    """Add a narrow marker panel above the main axes, sharing its x-axis.

    Row i of the strip_rows rows is at y = i, with row 0 on top. Returns
    (strip, main).
    """
    strip_ratio = max(STRIP_HEIGHT_RATIO, math.ceil(strip_rows / STRIP_ROWS_PER_HEIGHT_RATIO))
    strip, main = figure.subplots(2, 1, sharex=True,
                                  height_ratios=(strip_ratio, MAIN_HEIGHT_RATIO))

    strip.set_ylim(strip_rows - 0.5, -0.5)
    strip.set_yticks([])
    strip.set_ylabel(strip_label, rotation=0, ha="right", va="center")
    strip.tick_params(labelbottom=False)
    strip.grid(True, axis="x", alpha=0.4)
    return strip, main


def _add_legend(axes, title, **options):
    """Add the legend outside the axes, on the right, with symbols of one size."""
    legend = axes.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), **options)
    for handle in legend.legend_handles:
        if hasattr(handle, "set_markersize"):
            handle.set_markersize(LEGEND_MARKER_SIZE_POINTS)
    return legend


def _add_legend_entry(axes, text, **style):
    """Add a legend entry for something drawn elsewhere, or for text alone."""
    axes.plot([], [], linestyle="none", label=text, **style)


def _draw_propagation(figure, columns, field, window):
    """Draw each COMPLETED request's duration at its start_time, colored by field.

    ERROR requests have no duration, so a red x in the panel above marks
    each one at its start_time. ACCEPTED requests are still polling and are
    only counted in the legend.
    """
    title = f"Propagation time by {field}, {window_text(*window)}"
    completed = (columns.status == model.COMPLETED) & ~np.isnan(columns.duration)
    errors = columns.status == model.ERROR
    accepted_count = int(np.count_nonzero(columns.status == model.ACCEPTED))

    if not completed.any() and not errors.any():
        details = ""
        if accepted_count:
            details = f"{accepted_count:,} requests still ACCEPTED (polling)"
        _draw_no_data(figure, title, details)
        return

    figure.suptitle(title)
    strip, axes = _strip_and_main_axes(figure, "ERROR", strip_rows=1)
    dates_x = _date_numbers(columns.start_time)
    values = getattr(columns, field)
    groups, others = _split_groups(field, collections.Counter(values[completed].tolist()))
    colors = _group_colors(field, groups)
    masks = {group: completed & (values == group) for group in groups}
    if others:
        other_label = _other_label(field, others)
        colors[other_label] = OTHER_COLOR
        masks[other_label] = completed & _is_in(values, others)
    marker_size = _marker_size_points(int(np.count_nonzero(completed)))

    # Every group's random subsets of round 0 first, then of round 1, and so on.
    generator = np.random.default_rng(SCATTER_SEED)
    rounds = {}
    for label, mask in masks.items():
        indexes = generator.permutation(np.flatnonzero(mask))
        rounds[label] = np.array_split(indexes, SCATTER_ROUNDS)

    for round_index in range(SCATTER_ROUNDS):
        for label, parts in rounds.items():
            # One legend entry per group, from its round-0 line. matplotlib
            # leaves out labels that start with an underscore.
            subset = parts[round_index]
            legend_label = "_nolegend_"
            if round_index == 0:
                legend_label = f"{label} ({sum(part.size for part in parts):,})"
            axes.plot(dates_x[subset], columns.duration[subset], linestyle="none", marker=".",
                      markersize=marker_size, alpha=0.6, color=colors[label],
                      rasterized=True, label=legend_label)

    error_count = int(np.count_nonzero(errors))
    strip.plot(dates_x[errors], np.zeros(error_count), linestyle="none", marker="x",
               markersize=6, color=ERROR_COLOR, rasterized=True)
    _add_legend_entry(axes, f"ERROR ({error_count:,}), top panel", marker="x",
                      color=ERROR_COLOR)

    if accepted_count:
        _add_legend_entry(axes, f"ACCEPTED ({accepted_count:,}), still polling: not shown")

    durations = columns.duration[completed]
    if durations.size:
        bottom = min(0.0, float(durations.min()))
        top = max(float(durations.max()) * Y_HEADROOM_FACTOR, bottom + 1.0)
        axes.set_ylim(bottom, top)
    else:
        axes.set_ylim(0.0, 1.0)

    _set_time_axis(axes, window, "start_time (UTC)")
    axes.set_ylabel("propagation time (s)")
    axes.grid(True, alpha=0.4)
    _add_legend(axes, field)


def _cdf_points(sorted_values):
    """Return the x and y of an empirical CDF, through at most MAX_CDF_POINTS ranks.

    The rank i (from 0) of n sorted values is at y = (i + 1) / n. Above
    MAX_CDF_POINTS values, the ranks are evenly spaced and include the first
    and the last.
    """
    count = sorted_values.size
    ranks = np.arange(count)
    if count > MAX_CDF_POINTS:
        ranks = np.unique(np.linspace(0, count - 1, MAX_CDF_POINTS).round().astype(np.int64))
    # The curve starts at 0 at the smallest value, so that even a single
    # request draws a visible step.
    x = np.concatenate(([sorted_values[0]], sorted_values[ranks]))
    y = np.concatenate(([0.0], (ranks + 1) / count))
    return x, y


def _draw_cdf(figure, columns, window):
    """Draw the empirical CDF of the propagation times of each condition."""
    title = f"Propagation time distribution (CDF), {window_text(*window)}"
    completed = (columns.status == model.COMPLETED) & ~np.isnan(columns.duration)

    if not completed.any():
        _draw_no_data(figure, title)
        return

    figure.suptitle(title)
    axes = figure.add_subplot()
    groups = _group_values("condition", columns.condition[completed].tolist())
    colors = _group_colors("condition", groups)
    smallest = 0.0

    for group in groups:
        durations = np.sort(columns.duration[completed & (columns.condition == group)])
        x, y = _cdf_points(durations)
        median = float(np.median(durations))
        smallest = min(smallest, float(durations[0]))
        axes.step(x, y, where="post", color=colors[group], linewidth=1.8,
                  label=f"{group} (n={durations.size:,}, median {median:.3g} s)")

    axes.set_xlim(left=smallest)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("propagation time (s)")
    axes.set_ylabel("fraction of COMPLETED requests")
    axes.grid(True, alpha=0.4)
    axes.legend(title="condition", loc="lower right")


def _latency_interval_seconds(histograms, window):
    """Return the interval that the latency lines merge buckets into.

    The span is the window when it is closed, otherwise the buckets present.
    """
    if _is_closed_window(window):
        span_seconds = window[1] - window[0]
    else:
        starts = [histogram.bucket_start for histogram in histograms]
        span_seconds = max(starts) - min(starts) + latency.BUCKET_SECONDS

    for interval_seconds in LATENCY_INTERVALS_SECONDS:
        if span_seconds / interval_seconds <= MAX_LATENCY_INTERVALS:
            return interval_seconds
    return LATENCY_INTERVALS_SECONDS[-1]


def _latency_series(histograms, interval_seconds):
    """Return per line label the interval middles and the median and p99 in ms.

    The line labels are nameservers, and with more nameservers than
    GROUP_COLORS, the most queried ones and "N other nameservers" (see
    _split_groups). The histograms of each label are merged per interval,
    which starts at a multiple of interval_seconds in unix time. Each series
    covers every interval from its first to its last, with NaN where an
    interval has no answered query, so that the lines break at gaps.
    Returns the series in legend order, and the label of the "other" line
    or None.
    """
    queries = collections.Counter()
    for histogram in histograms:
        queries[histogram.nameserver] += histogram.answered + histogram.timeouts
    groups, others = _split_groups("nameserver", queries)
    label_of = {nameserver: nameserver for nameserver in groups}
    other_label = None
    if others:
        other_label = _other_label("nameserver", others)
        label_of.update(dict.fromkeys(others, other_label))

    def label_and_interval(histogram):
        return (label_of[histogram.nameserver], histogram.bucket_start // interval_seconds)

    by_label = {label: {} for label in label_of.values()}
    for (label, interval), histogram in stats.merge_histograms(
            histograms, label_and_interval).items():
        by_label[label][interval] = histogram

    series = {}
    for label, intervals in by_label.items():
        first, last = min(intervals), max(intervals)
        median_ms = np.full(last - first + 1, np.nan)
        p99_ms = np.full(last - first + 1, np.nan)
        timeouts = np.zeros(last - first + 1, dtype=np.int64)

        for interval, histogram in intervals.items():
            index = interval - first
            timeouts[index] = histogram.timeouts
            median = stats.histogram_percentile_seconds(histogram, 0.5)
            if median is not None:
                median_ms[index] = median * 1000.0
                p99_ms[index] = stats.histogram_percentile_seconds(histogram, 0.99) * 1000.0

        middles = (np.arange(first, last + 1) + 0.5) * interval_seconds
        series[label] = (middles, median_ms, p99_ms, timeouts)
    return series, other_label


def _duration_text(seconds):
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _draw_latency(figure, histograms, window):
    """Draw the median and p99 query latency of each nameserver per interval.

    Timeouts have no round-trip time, so an x in the panel above marks each
    interval with timeouts, one row per nameserver. The legend has one
    entry per nameserver for its color, and one per line style.
    """
    from matplotlib import ticker

    title = f"DNS query latency by nameserver, {window_text(*window)}"
    if not histograms:
        _draw_no_data(figure, title)
        return

    interval_seconds = _latency_interval_seconds(histograms, window)
    series, other_label = _latency_series(histograms, interval_seconds)
    interval_text = _duration_text(interval_seconds)

    figure.suptitle(title)
    strip, axes = _strip_and_main_axes(figure, "timeouts", strip_rows=len(series))
    axes.set_yscale("log")
    colors = _group_colors("nameserver", list(series))
    if other_label is not None:
        colors[other_label] = OTHER_COLOR

    for row, (label, (middles, median_ms, p99_ms, timeouts)) in enumerate(series.items()):
        # NOTE: a log scale cannot show 0 ms, which only a round-trip time
        # recorded as exactly 0 gives, so such intervals show as gaps.
        median_ms = np.where(median_ms > 0, median_ms, np.nan)
        p99_ms = np.where(p99_ms > 0, p99_ms, np.nan)
        dates_x = _date_numbers(middles)
        color = colors[label]
        marker = "." if middles.size <= MAX_MARKED_INTERVALS else None

        # Median and p99 differ in marker as well as line style, so that a
        # window of a single interval, drawn as points only, stays readable.
        axes.plot(dates_x, median_ms, color=color, linestyle="-", linewidth=1.6,
                  marker=marker and "o", markersize=4,
                  label=f"{label} ({int(timeouts.sum()):,} timeouts)")
        axes.plot(dates_x, p99_ms, color=color, linestyle="--", linewidth=1.2,
                  marker=marker and "^", markersize=4, label="_nolegend_")

        with_timeouts = timeouts > 0
        strip.plot(dates_x[with_timeouts], np.full(int(with_timeouts.sum()), row),
                   linestyle="none", marker="x", markersize=6, color=color)

    # Entries for the line styles, in black, after those for the colors.
    axes.plot([], [], color="black", linestyle="-", linewidth=1.6, marker="o", markersize=4,
              label="median")
    axes.plot([], [], color="black", linestyle="--", linewidth=1.2, marker="^", markersize=4,
              label="p99")
    _add_legend_entry(axes, "interval with timeouts (top panel)", marker="x", color="black")

    # Ticks at 1, 2 and 5 times powers of ten, as plain numbers such as 0.5,
    # 20 and 200, read faster than bare powers of ten. The limits are such
    # ticks too, so that a tick lies below the lowest line and above the
    # highest.
    times_ms = np.concatenate([np.concatenate(values[1:3]) for values in series.values()])
    times_ms = times_ms[np.isfinite(times_ms) & (times_ms > 0)]
    if times_ms.size:
        axes.set_ylim(_tick_below(times_ms.min()), _tick_above(times_ms.max()))
    else:
        axes.set_ylim(1.0, 1000.0)
    axes.yaxis.set_major_locator(ticker.LogLocator(base=10.0, subs=TICK_MANTISSAS))
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(_plain_number))
    # matplotlib labels the minor ticks of a log axis that spans less than
    # about a decade, as 4x10^0 and such, between the plain major labels.
    axes.yaxis.set_minor_formatter(ticker.NullFormatter())

    _set_time_axis(axes, window, f"time (UTC), per {interval_text}")
    axes.set_ylabel("query round-trip time (ms), log scale")
    axes.grid(True, which="major", alpha=0.4)
    axes.grid(True, which="minor", alpha=0.15)
    _add_legend(axes, "nameserver")


def _plain_number(value, _position):
    return f"{value:g}"


def _tick_below(value):
    """Return the largest 1, 2 or 5 times a power of ten below a positive value."""
    exponent = math.floor(math.log10(value))
    candidates = [mantissa * 10.0**power for power in (exponent - 1, exponent)
                  for mantissa in TICK_MANTISSAS]
    return max(candidate for candidate in candidates if candidate < value)


def _tick_above(value):
    """Return the smallest 1, 2 or 5 times a power of ten above a positive value."""
    exponent = math.floor(math.log10(value))
    candidates = [mantissa * 10.0**power for power in (exponent, exponent + 1)
                  for mantissa in TICK_MANTISSAS]
    return min(candidate for candidate in candidates if candidate > value)
