"""The jobs charts: bars scaled to the busiest bucket, failed stacked under processed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from regua.ops.charts import HEIGHT, chart
from workers.stats import Bucket, MemoryJobCounts

START = datetime(2026, 12, 9, 14, 0, tzinfo=UTC)


def test_the_busiest_bucket_fills_the_chart_and_failed_sit_at_the_bottom() -> None:
    buckets = [Bucket(START, 0, 0), Bucket(START + timedelta(minutes=1), 30, 10), Bucket(START, 20, 0)]
    drawn = chart("jobs", buckets, "%H:%M")
    empty, busiest, half = drawn.bars
    assert (drawn.peak, drawn.processed, drawn.failed) == (40, 50, 10)
    assert (empty.processed_height, empty.failed_height) == (0, 0)
    assert busiest.failed_y + busiest.failed_height == HEIGHT
    assert busiest.processed_y + busiest.processed_height == busiest.failed_y
    assert round(busiest.processed_height + busiest.failed_height) == HEIGHT - 4
    assert half.processed_height == busiest.processed_height * 20 / 30
    assert busiest.label == "14:01: 30 processed, 10 failed"


def test_the_counts_fall_in_the_minute_and_hour_of_their_outcome() -> None:
    counts = MemoryJobCounts()
    counts.add("processed", START + timedelta(minutes=5, seconds=59))
    counts.add("failed", START + timedelta(minutes=5))
    counts.add("processed", START - timedelta(minutes=1))
    minutes = counts.buckets("minute", START + timedelta(minutes=5, seconds=30), 7)
    assert [(b.processed, b.failed) for b in minutes] == [(1, 0), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (1, 1)]
    assert minutes[-1].start == START + timedelta(minutes=5)
    hours = counts.buckets("hour", START + timedelta(minutes=30), 2)
    assert [(b.processed, b.failed) for b in hours] == [(1, 0), (1, 1)]
    assert counts.totals() == {"processed": 2, "failed": 1}
