"""recbole_streamrec — STREAM-Rec and TIGER as RecBole generative recommenders."""

from recbole_streamrec import compat

compat.apply()

__version__ = "0.1.0"
