"""Training-data preparation: release converters, the 4k mix draw with a manifest, the overlap check.

``python -m r1v.prepare SUBCOMMAND --help`` lists each step:

* ``video-r1``, ``video-thinker``, ``video-holmes`` convert one release's annotation file to
  the Video-R1 record schema of ``r1v.data`` (see ``r1v.prepare.sources`` for each release's
  format and where it was documented);
* ``overlap`` drops training items whose video or question appears in evaluation sets;
* ``mix`` draws the training mix of a YAML mixture (``data_configs/video_r1_4k_mix.yaml``)
  and writes a manifest; ``rebuild`` recreates the same records from a manifest.

Every converted record carries ``problem_id`` (``"<source>:<original id>"``), ``original_id``
(the release's own id), ``data_source`` and a ``path`` relative to the output file's folder.
"""
from r1v.prepare.common import MissingMediaError, PrepareReport

__all__ = ["MissingMediaError", "PrepareReport"]
