"""Readers of annotation formats other than COCO, each writing COCO instances through one builder.

``cityscapes`` (the official gtFine layout), ``labelme`` (one JSON file per image), ``via`` (VGG Image
Annotator 1 / 2 exports and projects; VIA 3 projects translated by ``via3``), ``cvat`` ("CVAT for
images" XML; "CVAT for video" tracks split into frames by ``cvat_video``), ``labelstudio`` (Label
Studio's JSON and JSON-MIN exports; its brush RLE decoded by ``labelstudio_rle``), ``yolo``
(Ultralytics YOLO segmentation datasets) and ``voc`` (Pascal VOC segmentation PNGs, as tools export them
too; trees with boxes only read by ``voc_boxes``) fill a ``common.CocoBuilder`` and report every record
they cannot convert in a ``common.Report``; ``geometry`` turns the tools' shapes into COCO polygons
clipped to the image. ``maskrcnn convert-data`` drives them.
"""
