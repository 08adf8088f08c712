"""The shortest-edge resize rule shared by preprocessing (torch) and the decode
stage (swscale); no torch or PyAV import here."""
from __future__ import annotations


def resize_output_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    """(new_h, new_w) by transformers' rule: short side -> n, long side -> int(n * long / short)."""
    if width <= height:
        return int(shortest_edge * height / width), shortest_edge
    return shortest_edge, int(shortest_edge * width / height)
