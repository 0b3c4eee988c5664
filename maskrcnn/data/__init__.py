"""Data: image reading (``images``), COCO datasets (``coco``), resize / flip (``transforms``), batching
and samplers (``loader``), the synthetic shapes set (``shapes``) and COCO results (``coco_results``);
rewriting datasets: a file's validated records (``validated``), stratified splits (``split``) and merges
(``merge``).

Modules are imported where used (``from maskrcnn.data.coco import CocoDataset``) so that importing one
does not pull in the others.
"""
