"""Bar charts of jobs processed and failed, drawn as inline SVG by the template from these numbers."""

from __future__ import annotations

from dataclasses import dataclass

from workers.stats import Bucket

WIDTH = 600
HEIGHT = 120


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    processed_y: float
    processed_height: float
    failed_y: float
    failed_height: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    peak: int
    processed: int
    failed: int
    width: int = WIDTH
    height: int = HEIGHT


def chart(title: str, buckets: list[Bucket], label_format: str) -> Chart:
    """Processed stacked on failed, one bar per bucket, scaled to the busiest bucket."""
    peak = max((b.processed + b.failed for b in buckets), default=0)
    scale = (HEIGHT - 4) / peak if peak else 0.0
    step = WIDTH / max(len(buckets), 1)
    bars = []
    for n, bucket in enumerate(buckets):
        failed_height = bucket.failed * scale
        processed_height = bucket.processed * scale
        failed_y = HEIGHT - failed_height
        bars.append(
            Bar(
                x=round(n * step, 2),
                width=round(max(step - 1, 1), 2),
                processed_y=round(failed_y - processed_height, 2),
                processed_height=round(processed_height, 2),
                failed_y=round(failed_y, 2),
                failed_height=round(failed_height, 2),
                label=f"{bucket.start.strftime(label_format)}: {bucket.processed} processed, {bucket.failed} failed",
            )
        )
    return Chart(
        title,
        bars,
        peak,
        processed=sum(b.processed for b in buckets),
        failed=sum(b.failed for b in buckets),
    )
